"""capture/blockwise.py where mutants survived the other tests: the layer's attention options (Gemma2's logit
soft-capping, a sliding window handed over in the call rather than in the mask), the layer named in the errors,
responses of one token or none, the look-back, and ``BlockAttention`` itself against a literal softmax."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model
from test_capture import assert_rows_match, batch, dense_reference
from test_hostile_capture import tiny_gemma2

from lightning_reasonattn import capture_rhythm
from lightning_reasonattn.capture.blockwise import BlockAttention, MapRecorder, StatsRecorder, check_lengths
from lightning_reasonattn.compat import unregister_attention


def test_softcap_reaches_the_streamed_probabilities():
    """A layer's logit soft-capping (Gemma2 ``attn_logit_softcapping``, the call's ``softcap``) is applied before the
    softmax: a cap that binds (1.0, scores up to a few units with the scale ``1 / sqrt(1)``) changes WAAD and FAI, and
    the streamed ones must still equal the eager maps' (dropping the option read the uncapped scores)."""
    model = tiny_gemma2(attn_logit_softcapping=1.0, query_pre_attn_scalar=1)
    ids, am, resp = batch(b=2, n=40)
    trace = capture_rhythm(model, ids, am, resp)
    ref = dense_reference(model, ids, am, resp)
    for row in range(2):
        assert_rows_match(trace, ref, row, row)


def _varlen_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, sliding_window=None, **kw):
    """Attention as flash kernels get it: ``attention_mask`` is ``None`` or the 2-D padding mask, the window comes in
    the call (``sliding_window``) and the kernel applies causality, window and padding itself."""
    n = query.shape[2]
    offset = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    allowed = (offset >= 0) & (offset < (sliding_window or n + 1))
    if attention_mask is not None:  # padding queries attend to themselves: a finite row, never read
        allowed = (allowed & attention_mask[:, None, None, :].bool()) | torch.eye(n, dtype=torch.bool)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


@pytest.fixture
def varlen_attention():
    """A CPU attention implementation that gets what ``flash_attention_2`` gets on a GPU (transformers' flash mask:
    no 4-D mask), registered for the test only."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register("cpu_varlen", _varlen_attention)
    AttentionMaskInterface.register("cpu_varlen", flash_attention_mask)
    yield "cpu_varlen"
    unregister_attention("cpu_varlen")


def test_window_given_in_the_call_without_a_mask(varlen_attention):
    """Under flash attention the layer's mask is ``None`` or 2-D padding: the capture must apply the call's
    ``sliding_window`` (keys with ``t - s >= W`` masked) and the padding itself. Against eager maps, where the window
    is in the 4-D mask; a window of 20 in 60 tokens binds, and the left-padded row has a 2-D mask."""
    model = tiny_model("mistral", attn=varlen_attention, sliding_window=20)
    ids, am, resp = batch(b=2, n=60)
    am[1, :5] = 0
    resp[1, :5] = False
    trace = capture_rhythm(model, ids, am, resp)
    ref = dense_reference(model, ids, am, resp)
    for row in range(2):
        assert_rows_match(trace, ref, row, row)


def _literal_probs(query, key, scale, softcap, window):
    """``softmax(c tanh(q k^T s / c))`` over causal keys with ``t - s < W``, one head at a time (float64)."""
    b, h, n, _ = query.shape
    group = h // key.shape[1]
    out = torch.empty(b, h, n, n, dtype=torch.float64)
    t, s = torch.arange(n)[:, None], torch.arange(n)[None, :]
    allowed = (t >= s) & (t - s < window)
    for i in range(b):
        for j in range(h):
            scores = query[i, j].double() @ key[i, j // group].double().T * scale
            scores = softcap * torch.tanh(scores / softcap)
            out[i, j] = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return out


def test_block_attention_against_a_literal_softmax():
    """``BlockAttention`` with no mask from the model, soft-capping, a window, grouped-query heads and the default
    ``stop`` (all rows): each block of rows equals the literal softmax, so a dropped cap, window or an off-by-one window
    edge (``>`` for ``>=``) shows."""
    g = torch.Generator().manual_seed(0)
    query, key = torch.randn(2, 4, 11, 8, generator=g) * 2, torch.randn(2, 2, 11, 8, generator=g) * 2
    attn = BlockAttention(3, query, key, None, torch.ones(2, 11, dtype=torch.bool), softcap=2.0, sliding_window=4)
    expected = _literal_probs(query, key, 8**-0.5, 2.0, 4)
    for r0, r1 in ((0, 3), (3, 8), (8, 11)):
        torch.testing.assert_close(attn(r0, r1).double(), expected[:, :, r0:r1, :r1], atol=1e-5, rtol=0)


def _recorders(n: int):
    """A StatsRecorder and a MapRecorder for layer 5 of a one-sequence batch of ``n`` tokens."""
    key_mask = torch.ones(1, n, dtype=torch.bool)
    resp = torch.zeros(1, n, dtype=torch.bool)
    resp[0, 2:] = True
    stats = StatsRecorder({5: 0}, resp, key_mask, window=3, horizon=(1, 4), block_size=4)
    maps = MapRecorder({5: 0}, key_mask, {"local": torch.zeros(1, 1, dtype=torch.long)}, 0, n, block_size=4)
    return stats, maps


@pytest.mark.parametrize("recorder", [0, 1], ids=["stats", "maps"])
def test_errors_name_the_layer(recorder):
    """The refusals name the layer that ran the bad call (a model with several attention kinds is debugged by it):
    3 query heads over 2 key heads, and a call over 13 keys when the masks are [1, 10]."""
    q = torch.zeros(1, 3, 10, 4)
    with pytest.raises(RuntimeError, match="layer 5: 3 query heads are not a multiple of 2 key heads"):
        _recorders(10)[recorder].observe(5, q, torch.zeros(1, 2, 10, 4), None, None, {})
    with pytest.raises(RuntimeError, match=r"layer 5 ran 10 queries over 13 keys"):
        _recorders(10)[recorder].observe(5, torch.zeros(1, 2, 10, 4), torch.zeros(1, 2, 13, 4), None, None, {})


def test_check_lengths_refuses_more_keys_than_the_masks():
    """A call whose queries line up with the ``[B, N]`` masks but whose keys do not (a KV cache of 3 earlier tokens)
    is refused by ``check_lengths`` itself, as the SDPA route and the knockout rely on."""
    with pytest.raises(RuntimeError, match=r"masks given to the capture are \[1, 10\]"):
        check_lengths(2, torch.zeros(1, 2, 10, 4), torch.zeros(1, 2, 13, 4), torch.ones(1, 10, dtype=torch.bool))


def test_one_response_token_and_an_empty_response():
    """The batch's only response token is the last one of row 0; row 1 has none. Row 0's WAAD, FAI and head distance
    come from that one row (count 1: neither skipped nor halved); row 1's head distance is NaN (no rows), not 0."""
    model = tiny_model("llama", num_hidden_layers=3)
    ids, am, _ = batch(b=2, n=30)
    resp = torch.zeros(2, 30, dtype=torch.bool)
    resp[0, -1] = True
    opts = dict(layers="all", horizon=(0, 5))
    trace = capture_rhythm(model, ids, am, resp, **opts)
    ref = dense_reference(model, ids, am, resp, **opts)
    assert_rows_match(trace, ref, 0, 0)
    assert trace.head_distance[0].isfinite().all() and trace.head_distance[0].gt(0).all()
    assert trace.head_distance[1].isnan().all() and ref.head_distance[1].isnan().all()


def test_response_from_the_first_token():
    """A response with no prompt: FAI of token 0 sums the rows ``t`` with ``lo <= t <= hi`` like every other
    column (it is the first column, not one to skip)."""
    model = tiny_model("llama", num_hidden_layers=3)
    ids, am, resp = batch(b=1, n=40, prompt=0)
    opts = dict(layers="all", horizon=(1, 8))
    trace = capture_rhythm(model, ids, am, resp, **opts)
    assert_rows_match(trace, dense_reference(model, ids, am, resp, **opts))
    assert trace.fai[0, 0].isfinite()


def test_look_back_reaches_the_trace():
    """``look_back`` is the user's (1, not the default 3): the trace carries it and its dominated anchors and
    introductory tokens are those of the dense reference with the same look-back."""
    model = tiny_model("llama", num_hidden_layers=3)
    ids, am, resp = batch(b=2, n=80)
    trace = capture_rhythm(model, ids, am, resp, layers="all", look_back=1)
    ref = dense_reference(model, ids, am, resp, layers="all", look_back=1)
    assert trace.look_back == 1
    for row in range(2):
        assert_rows_match(trace, ref, row, row)
