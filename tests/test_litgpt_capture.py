"""The SDPA route on LitGPT's ``GPT`` (Lightning's own model library) against the dense reference.

litgpt 0.5.13 is installed by ``make install`` with ``pip install --no-deps`` (its pins on huggingface-hub and
jsonargparse conflict with this project's; its ``GPT`` imports and runs without them). The reference wraps each
attention module's own ``scaled_dot_product_attention`` method to keep the q and k it is handed (after RoPE,
QK-norm and the repetition of key heads) and forms ``softmax(q k^T * scale + causal mask)`` densely.
"""

import math

import pytest
import torch
from test_capture import assert_rows_match, batch

from lightning_reasonattn import capture_rhythm
from lightning_reasonattn.functional import rhythm_from_attentions

pytest.importorskip(
    "litgpt", reason="litgpt is not installed: pip install --no-deps litgpt==0.5.13 (make install does it)"
)
from litgpt.config import Config  # noqa: E402
from litgpt.model import GPT  # noqa: E402

HORIZON = (4, 40)
SMALL = dict(n_layer=6, n_head=4, n_embd=32, block_size=128, vocab_size=97, padded_vocab_size=128, bias=False)
VARIANTS = {
    "grouped-query (repeated heads)": {"n_query_groups": 2},
    "multi-head": {"n_query_groups": 4},
    "custom scale": {"n_query_groups": 2, "attention_scores_scalar": 7},
    "qk-norm, partial rope": {"n_query_groups": 1, "norm_qk": True, "rotary_percentage": 0.5},
}


def gpt(seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(Config(**{**SMALL, **overrides})).eval()


def dense_reference(model: GPT, ids, resp, layers, **kw):
    """The trace of the dense maps of the selected layers, from the q and k each attention module hands SDPA."""
    kept = {}
    for i, block in enumerate(model.transformer.h):
        own = block.attn.scaled_dot_product_attention

        def keep(q, k, v, mask=None, i=i, own=own):
            kept[i] = (q.detach().double(), k.detach().double())
            return own(q, k, v, mask)

        block.attn.scaled_dot_product_attention = keep
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for block in model.transformer.h:
            del block.attn.scaled_dot_product_attention
    c = model.config
    scale = 1.0 / math.sqrt(c.attention_scores_scalar or c.head_size)
    n = ids.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    maps = []
    for layer in layers:
        q, k = kept[layer]
        assert k.shape[1] == q.shape[1]  # LitGPT repeats the key heads before SDPA
        maps.append(((q @ k.transpose(-1, -2)) * scale).masked_fill(~causal, float("-inf")).softmax(-1))
    return rhythm_from_attentions(torch.stack(maps, 1), resp, layers, **kw)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_matches_dense_reference(variant):
    model = gpt(**VARIANTS[variant])
    ids, am, resp = batch(b=2, n=90)
    with torch.no_grad():
        plain = model(ids)
    trace, logits = capture_rhythm(model, ids, am, resp, horizon=HORIZON, return_outputs=True)
    assert torch.equal(logits, plain)  # bit for bit
    assert trace.layers == [2, 3, 4]
    ref = dense_reference(model, ids, resp, trace.layers, horizon=HORIZON)
    for row in range(2):
        assert_rows_match(trace, ref, row, row)
    named = capture_rhythm(model, ids, am, resp, horizon=HORIZON, attention_modules="transformer.h.*.attn")
    assert_rows_match(named, trace)


def test_sliding_window_layers_are_refused_and_full_ones_measured():
    model = gpt(n_query_groups=2, sliding_window_size=8, sliding_window_indices=[1, 0] * 3)  # even layers: window
    ids, am, resp = batch(b=1, n=60)
    with pytest.raises(ValueError, match=r"layer 0\).*sliding window.*layers="):
        capture_rhythm(model, ids, am, resp, layers="all")
    trace = capture_rhythm(model, ids, am, resp, layers=[1, 3, 5], horizon=HORIZON)
    assert_rows_match(trace, dense_reference(model, ids, resp, [1, 3, 5], horizon=HORIZON))


def test_padding():
    """GPT takes no padding mask: right padding is exact (never attended by real tokens), left padding refused."""
    model = gpt(n_query_groups=2)
    ids, am, resp = batch(b=2, n=70)
    am[1, -11:], resp[1, -11:] = 0, False
    trace = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    alone = capture_rhythm(model, ids[1:, :-11], None, resp[1:, :-11], horizon=HORIZON)
    assert_rows_match(trace, alone, 1, 0, slice(0, 59), slice(None))
    with pytest.raises(ValueError, match="GPT.forward takes no attention_mask"):
        capture_rhythm(model, ids, am.flip(-1), resp.flip(-1))
