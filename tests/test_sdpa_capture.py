"""The SDPA route: capture_rhythm on a nanoGPT-style model against the dense reference, and its refusals.

The reference takes the q and k each attention module computes (its input caught by a hook, ``qkv`` recomputed),
forms ``softmax(q k^T * scale + mask)`` densely with the causal-and-no-padding mask, and reduces the maps with the
functional math (``rhythm_from_attentions``): no code of the capture is on that path.
"""

import pytest
import torch
from conftest import tiny_model
from test_capture import assert_rows_match, batch, padded_batch
from tiny_gpt import MaskedGPT, TinyGPT, dense_maps

from lightning_reasonattn import capture_group_maps, capture_rhythm, rhythm_capture
from lightning_reasonattn.functional import rhythm_from_attentions, select_layers

HORIZON = (4, 40)
SHAPES = ((80, 55, 67), (12, 20, 5))  # lengths and prompt lengths of the padded batches
VARIANTS = {
    "is_causal": {},
    "bool mask": {"causal": "bool"},
    "float mask": {"causal": "float"},
    "custom scale": {"scale": 0.31},
    "enable_gqa": {"n_kv_head": 2},
    "repeated heads": {"n_kv_head": 2, "gqa": "repeat"},
    "multi-query": {"n_kv_head": 1, "causal": "bool"},
    "ALiBi bias": {"causal": "alibi", "n_kv_head": 2},
}


def reference(model, ids, am, resp, layers="middle", run=None, **kw):
    chosen = select_layers(model.config.n_layer, layers)
    maps = dense_maps(model, ids, am, chosen, run)
    return rhythm_from_attentions(maps, resp, chosen, **kw)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_matches_dense_reference(variant):
    model = TinyGPT(n_layer=6, **VARIANTS[variant])
    ids, am, resp = batch(b=2, n=90)
    with torch.no_grad():
        plain = model(ids)
    trace, logits = capture_rhythm(model, ids, am, resp, horizon=HORIZON, return_outputs=True)
    assert torch.equal(logits, plain)  # bit for bit: the capture runs the model's own SDPA calls unchanged
    ref = reference(model, ids, am, resp, horizon=HORIZON)
    assert trace.layers == [2, 3, 4]
    for row in range(2):
        assert_rows_match(trace, ref, row, row)
    assert trace.anchor.any() and trace.preplan.any()


def test_options_reach_the_math():
    model = TinyGPT(n_layer=5, n_kv_head=2)
    ids, am, resp = batch(b=2, n=70)
    opts = dict(layers=[0, 4], window=3, horizon=(2, 30), head_fraction=0.5, q=0.25)
    trace = capture_rhythm(model, ids, am, resp, block_size=7, **opts)
    ref = reference(model, ids, am, resp, **opts)
    assert trace.layers == [0, 4]
    assert_rows_match(trace, ref, 1, 1)


def test_named_modules_equal_the_found_blocks():
    model = TinyGPT(n_layer=6)
    ids, am, resp = batch(b=1, n=60)
    found = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    for named in ("transformer.h.*.attn", [block.attn for block in reversed(model.transformer.h)]):
        trace = capture_rhythm(model, ids, am, resp, horizon=HORIZON, attention_modules=named)
        assert_rows_match(trace, found)


@pytest.mark.parametrize("causal", ["flag", "bool", "float"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_of_a_model_that_takes_the_mask(side, causal):
    model = MaskedGPT(causal=causal, n_kv_head=2)
    ids, am, resp, spans = padded_batch(side, *SHAPES)
    trace = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    pos = (am.cumsum(-1) - 1).clamp_min(0)
    ref = reference(model, ids, am, resp, run=lambda: model(ids, attention_mask=am, position_ids=pos), horizon=HORIZON)
    for row, span in enumerate(spans):
        assert_rows_match(trace, ref, row, row)
        alone = capture_rhythm(model, ids[row : row + 1, span], None, resp[row : row + 1, span], horizon=HORIZON)
        assert_rows_match(trace, alone, row, 0, span, slice(None))  # padding changes nothing


def test_right_padding_needs_no_mask():
    model = TinyGPT()  # takes input_ids only: padding after the real tokens is never attended by them
    ids, am, resp, spans = padded_batch("right", *SHAPES)
    trace = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    for row, span in enumerate(spans):
        alone = capture_rhythm(model, ids[row : row + 1, span], None, resp[row : row + 1, span], horizon=HORIZON)
        assert_rows_match(trace, alone, row, 0, span, slice(None))


def test_own_forward_passes_the_mask():
    model = TinyGPT(causal="bool")
    ids, am, resp, spans = padded_batch("left", *SHAPES)
    trace = capture_rhythm(
        model, ids, am, resp, horizon=HORIZON, forward=lambda m, input_ids, mask: m.run(input_ids, mask)
    )
    ref = reference(model, ids, am, resp, run=lambda: model.run(ids, am), horizon=HORIZON)
    for row in range(3):
        assert_rows_match(trace, ref, row, row)


def test_rhythm_capture_inside_a_training_forward():
    model = TinyGPT(n_kv_head=2).train()
    ids, am, resp = batch(b=2, n=50)
    loss_plain = model(ids).logsumexp(-1).mean()
    loss_plain.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with rhythm_capture(model, resp, horizon=HORIZON) as rec:
        loss = model(ids).logsumexp(-1).mean()
    loss.backward()
    assert torch.equal(loss, loss_plain)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    assert_rows_match(rec.trace(), capture_rhythm(model.eval(), ids, am, resp, horizon=HORIZON))


def test_group_maps_match_dense_maps():
    model = TinyGPT(n_kv_head=2, causal="bool")
    ids, am, resp = batch(b=2, n=60)
    trace = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    maps = capture_group_maps(model, ids, trace, am, span=(20, 50), block_size=9)
    dense = dense_maps(model, ids, am, trace.layers).flatten(1, 2)  # [B, L_sel * H, N, N]
    for name, heads in (("local", trace.local_heads), ("global", trace.global_heads)):
        expect = torch.stack([dense[b, heads[b]].mean(0)[20:50, 20:50] for b in range(2)])
        torch.testing.assert_close(maps[name].double(), expect, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_a_transformers_model_through_its_sdpa_calls(family):
    """The SDPA route on a transformers model equals its AttentionInterface route (itself tested against eager)."""
    model = tiny_model(family)
    ids, am, resp = batch(b=2, n=70)
    am[1, :9] = 0  # left padding: transformers hands SDPA a 4-D bool mask
    resp[1, :9] = False
    direct = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    via_sdpa = capture_rhythm(model, ids, am, resp, horizon=HORIZON, attention_modules="model.layers.*.self_attn")
    for row in range(2):
        assert_rows_match(via_sdpa, direct, row, row, atol=1e-6)


def test_hooks_and_mode_are_gone_afterwards():
    model = TinyGPT(causal="window")
    ids, am, resp = batch(b=1, n=40)
    with pytest.raises(ValueError, match="sliding window"):
        capture_rhythm(model, ids, am, resp, layers="all")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert not torch._C._is_torch_function_mode_enabled()


# ---------------------------------------------------------------------------------------------- refusals
def two_stacks():
    model = TinyGPT()
    model.extra = torch.nn.ModuleList([torch.nn.Linear(2, 2)])
    return model


REFUSED = {
    # name: (model factory, capture keywords (or a function of the model giving them), padding, error, message)
    "not causal (is_causal=False, no mask)": (lambda: TinyGPT(causal="none"), {}, None, TypeError, "is_causal=False"),
    "not causal (a prefix-LM mask)": (lambda: TinyGPT(causal="prefix", window=30), {}, None, TypeError, "later"),
    "sliding window": (lambda: TinyGPT(causal="window"), {}, None, ValueError, "sliding window"),
    "a named module that never calls SDPA": (
        TinyGPT,
        {"attention_modules": "transformer.h.*.mlp"},
        None,
        RuntimeError,
        r"'transformer.h.0.mlp' \(Sequential\) ran without calling",
    ),
    "a named module that calls SDPA more than once": (
        TinyGPT,
        lambda model: {"attention_modules": [model]},
        None,
        RuntimeError,
        "more than once",
    ),
    "a pattern that matches nothing": (
        TinyGPT,
        {"attention_modules": "blocks.*.attn"},
        None,
        ValueError,
        "matches no module of TinyGPT.*'transformer'",
    ),
    "a module of another model": (
        TinyGPT,
        {"attention_modules": [TinyGPT().transformer.h[0].attn]},
        None,
        ValueError,
        "not a submodule of TinyGPT",
    ),
    "modules one inside the other": (
        TinyGPT,
        lambda model: {"attention_modules": [model.transformer.h[0], model.transformer.h[0].attn]},
        None,
        ValueError,
        "one inside the other",
    ),
    "two stacks of blocks": (two_stacks, {}, None, TypeError, "2 stacks of blocks.*attention_modules="),
    "left padding, a model that takes no mask": (TinyGPT, {}, "left", ValueError, "takes no attention_mask"),
    "left padding, a forward that drops the mask": (
        TinyGPT,
        {"forward": lambda m, ids, mask: m(ids)},
        "left",
        ValueError,
        "without a mask, so real tokens attend to the padding",
    ),
    "a mask that ignores the padding": (
        lambda: MaskedGPT(causal="bool"),
        {"forward": lambda m, ids, mask: m(ids)},
        "left",
        ValueError,
        "attend to padding",
    ),
}
BAD_INPUTS = sorted(REFUSED)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_refused(case):
    make, kwargs, padding, error, message = REFUSED[case]
    model = make()
    kwargs = kwargs(model) if callable(kwargs) else kwargs
    ids, am, resp = batch(b=2, n=60)
    if padding == "left":
        am[1, :5], resp[1, :5] = 0, False
    elif padding == "right":
        am[1, -5:], resp[1, -5:] = 0, False
    with pytest.raises(error, match=message):
        capture_rhythm(model, ids, am, resp, horizon=HORIZON, layers="all", **kwargs)


def test_not_one_forward_is_refused():
    model = TinyGPT()
    ids, _, resp = batch(b=1, n=40)
    with pytest.raises(RuntimeError, match="ran twice inside one capture"):
        with rhythm_capture(model, resp):
            model(ids)
            model(ids)
    with pytest.raises(RuntimeError, match="ran 39 queries over 39 keys"):
        with rhythm_capture(model, resp):
            model(ids[:, :-1])
    with rhythm_capture(model, resp, layers="all") as rec:
        pass
    with pytest.raises(RuntimeError, match=r"no attention was recorded for layers \[0, 1, 2, 3\]"):
        rec.trace()
