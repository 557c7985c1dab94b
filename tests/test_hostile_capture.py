"""Inputs meant to break the capture: each is refused with a clear error (or a warning) that names the value.

``BAD_INPUTS`` enumerates every bad input handled here; each entry runs the bad call and says which error type
and which message fragment (naming the bad value) it must give. Around them: the inputs that must keep
working (numpy scalars, every causal family) and the once-only horizon warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from conftest import FAMILIES, tiny_model
from lightning.pytorch.utilities.exceptions import MisconfigurationException as MCE
from test_capture import assert_rows_match, batch, dense_reference

from lightning_reasonattn import AttentionRhythmMonitor, RhythmReport, capture_rhythm, rhythm_capture
from lightning_reasonattn.functional import attention as attention_math
from lightning_reasonattn.functional import credit_gamma, rhythm_from_attentions, select_layers


def tiny_bert(is_decoder: bool):
    """A BertLMHeadModel: in transformers' causal-LM mapping, bidirectional unless ``is_decoder=True``."""
    from transformers import BertConfig, BertLMHeadModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=97, hidden_size=48, num_hidden_layers=6, num_attention_heads=4, intermediate_size=96,
        is_decoder=is_decoder, attn_implementation="sdpa",
    )  # fmt: skip
    return BertLMHeadModel(config).eval()


def tiny_gemma2(**overrides):
    from transformers import AutoModelForCausalLM, Gemma2Config

    torch.manual_seed(0)
    config = Gemma2Config(
        **{
            **dict(vocab_size=97, hidden_size=48, intermediate_size=96, num_hidden_layers=6, num_attention_heads=4),
            **dict(num_key_value_heads=2, head_dim=12, sliding_window=24),
            **overrides,
        }
    )
    return AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()  # no SDPA: soft-capping


# ---- the bad calls (each builds what it needs; a tiny model takes a few milliseconds) ----


def forward_in_block(forwards):
    """Open one rhythm_capture block on a [2, 130] batch and run ``forwards(model, ids, am)`` inside it."""
    model = tiny_model("llama")
    ids, am, resp = batch()
    try:
        with torch.no_grad(), rhythm_capture(model, resp, am):
            forwards(model, ids, am)
    finally:
        assert model.config._attn_implementation == "sdpa"  # restored even after the refusal


def two_forwards():
    def run(model, ids, am):
        model(ids, attention_mask=am, use_cache=False)
        model(ids, attention_mask=am, use_cache=False)

    forward_in_block(forwards=run)


def shorter_prefill():
    forward_in_block(forwards=lambda model, ids, am: model(ids[:, :-1], attention_mask=am[:, :-1], use_cache=False))


def fewer_sequences():
    forward_in_block(forwards=lambda model, ids, am: model(ids[:1], attention_mask=am[:1], use_cache=False))


def generate_in_block():
    forward_in_block(
        forwards=lambda model, ids, am: model.generate(
            ids, attention_mask=am, max_new_tokens=3, do_sample=False, pad_token_id=0
        )
    )


def capture(model=None, **kwargs):
    ids, am, resp = batch()
    args = dict(model=model or tiny_model("llama"), input_ids=ids, attention_mask=am, response_mask=resp)
    return capture_rhythm(**{**args, **kwargs})


def block(model=None, response_mask=None, attention_mask=None, **kwargs):
    """Enter a rhythm_capture block (the refusals come at entry, before any forward)."""
    _, am, resp = batch()
    model = model or tiny_model("llama")
    response_mask = resp if response_mask is None else response_mask
    attention_mask = am if attention_mask is None else attention_mask
    with rhythm_capture(model, response_mask, attention_mask, **kwargs):
        pass


def one_bidirectional_layer():
    model = tiny_model("llama")
    model.model.layers[2].self_attn.is_causal = False
    capture(model)


def made_bidirectional_inside_the_block():
    def run(model, ids, am):
        model.model.layers[2].self_attn.is_causal = False
        model(ids, attention_mask=am, use_cache=False)

    forward_in_block(forwards=run)


def half_mask():
    _, _, resp = batch()
    return resp.float() * 0.5


def dense_maps_with_float_mask():
    maps = torch.full((1, 1, 1, 8, 8), 1 / 8).tril()
    rhythm_from_attentions(maps / maps.sum(-1, keepdim=True), torch.full((1, 8), 0.5))


def short_responses():
    model = tiny_model("llama")
    ids, am, _ = batch(b=2, n=60)
    resp = torch.zeros(2, 60, dtype=torch.bool)
    resp[:, 40:] = True  # 20 response tokens, horizon lo = 50
    capture_rhythm(model, ids, am, resp, horizon=(50, 100))


@dataclass(frozen=True)
class Bad:
    name: str
    run: Callable[[], object]
    error: type[BaseException]  # a Warning subclass: a warning, the call goes on
    match: str  # regex that must match the message; it names the bad value


BAD_INPUTS = [
    # one full forward per block, over the [B, N] batch of the masks
    Bad(
        "two forwards in one block",
        two_forwards,
        RuntimeError,
        r"second forward of layer \d+ inside one rhythm_capture",
    ),
    Bad(
        "prefill of N-1 tokens", shorter_prefill, RuntimeError, r"129 queries over 129 keys for 2 sequences.*\[2, 130\]"
    ),
    Bad("forward of fewer sequences", fewer_sequences, RuntimeError, r"130 queries over 130 keys for 1 sequences"),
    Bad("generate inside the block", generate_in_block, RuntimeError, r"1 queries over 131 keys.*no generate"),
    # attention that is not causal
    Bad(
        "BertLMHeadModel is_decoder=False",
        lambda: capture(tiny_bert(False)),
        TypeError,
        r"BertLMHeadModel.*is_causal=False",
    ),
    Bad(
        "bidirectional model entering a block",
        lambda: block(tiny_bert(False)),
        TypeError,
        r"BertLMHeadModel.*is_causal=False",
    ),
    Bad(
        "Gemma2 use_bidirectional_attention",
        lambda: capture(tiny_gemma2(use_bidirectional_attention=True)),
        TypeError,
        r"Gemma2ForCausalLM.*is_causal=False",
    ),  # fmt: skip
    Bad("one bidirectional layer", one_bidirectional_layer, TypeError, r"layer 2 \(LlamaAttention\.is_causal=False\)"),
    Bad(
        "attention made bidirectional in the block",
        made_bidirectional_inside_the_block,
        TypeError,
        r"layer 2 .*is_causal=False",
    ),  # fmt: skip
    # dtypes
    Bad(
        "float input_ids",
        lambda: capture(input_ids=batch()[0].float()),
        TypeError,
        r"input_ids has dtype torch\.float32.*integer",
    ),  # fmt: skip
    Bad(
        "float response_mask (0.5)",
        lambda: capture(response_mask=half_mask()),
        TypeError,
        r"response_mask has dtype torch\.float32.*\.bool\(\)",
    ),  # fmt: skip
    Bad(
        "float attention_mask",
        lambda: capture(attention_mask=batch()[1].float()),
        TypeError,
        r"attention_mask has dtype torch\.float32.*\.bool\(\)",
    ),  # fmt: skip
    Bad(
        "float response_mask entering a block",
        lambda: block(response_mask=half_mask()),
        TypeError,
        r"response_mask has dtype torch\.float32",
    ),  # fmt: skip
    Bad(
        "float attention_mask entering a block",
        lambda: block(attention_mask=batch()[1].half()),
        TypeError,
        r"attention_mask has dtype torch\.float16",
    ),  # fmt: skip
    Bad(
        "float response_mask of dense maps",
        dense_maps_with_float_mask,
        TypeError,
        r"response_mask has dtype torch\.float32",
    ),
    Bad(
        "integer response_mask holding 2",
        lambda: capture(response_mask=batch()[2].long() * 2),
        ValueError,
        r"response_mask holds values other than 0 and 1 \(2\)",
    ),  # fmt: skip
    Bad(
        "integer attention_mask holding 3",
        lambda: capture(attention_mask=batch()[1] * 3),
        ValueError,
        r"attention_mask holds values other than 0 and 1 \(3\)",
    ),  # fmt: skip
    # shapes at block entry
    Bad(
        "1-D response_mask entering a block",
        lambda: block(response_mask=batch()[2][0]),
        ValueError,
        r"response_mask has shape \(130,\)",
    ),  # fmt: skip
    Bad(
        "attention_mask of another shape entering a block",
        lambda: block(attention_mask=batch()[1][:, 1:]),
        ValueError,
        r"attention_mask has shape \(2, 129\), expected \(2, 130\)",
    ),  # fmt: skip
    Bad(
        "NaN gamma_amp",
        lambda: credit_gamma(None, "uniform", response_mask=batch()[2], gamma_amp=float("nan")),
        ValueError,
        r"gamma_amp=nan is invalid",
    ),  # fmt: skip
    # a horizon longer than every response: FAI all NaN, no anchors
    Bad("horizon longer than every response", short_responses, UserWarning, r"horizon=\(50, 100\).*FAI is NaN"),
    # ids the model cannot embed, a model that is not one, numbers past any tensor's integers
    Bad("ids past the vocabulary", lambda: capture(input_ids=batch()[0] + 10_000), ValueError, r"id \d+, outside"),
    Bad("negative ids", lambda: capture(input_ids=batch()[0] - 10_000), ValueError, r"id -\d+, outside the vocab"),
    Bad("a model name for the model", lambda: capture(model="gpt2"), TypeError, r"model='gpt2' \(str\) is not a"),
    Bad("look_back = 10**30", lambda: capture(look_back=10**30), ValueError, r"look_back=10{30} is invalid: it must"),
    Bad("window = 10**30", lambda: capture(window=10**30), ValueError, r"window=10{30} is invalid"),
    Bad("horizon up to 10**30", lambda: capture(horizon=(2, 10**30)), ValueError, r"horizon=\(2, 10{30}\) is inv"),
    # the callbacks' settings, refused when the callback is built
    Bad("a misspelt monitor setting", lambda: AttentionRhythmMonitor(horizonn=(2, 6)), MCE, r"horizonn=.*mean horizon"),
    Bad("num_buckets = -3", lambda: AttentionRhythmMonitor(num_buckets=-3), MCE, r"num_buckets=-3 is invalid"),
    Bad("a misspelt report setting", lambda: RhythmReport(windw=5), MCE, r"windw=5: did you mean window"),
    Bad("RhythmReport dpi = 10**6", lambda: RhythmReport(dpi=10**6), MCE, r"dpi=1000000 is invalid.*<= 600"),
]


@pytest.fixture(autouse=True)
def fresh_horizon_warning(monkeypatch):
    """The horizon warning is once per process; each test here starts as a fresh process would."""
    monkeypatch.setattr(attention_math, "_WARNED_SHORT_RESPONSES", False, raising=False)


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_message(bad):
    if issubclass(bad.error, Warning):
        with pytest.warns(bad.error, match=bad.match):
            bad.run()
    else:
        with pytest.raises(bad.error, match=bad.match):
            bad.run()


def test_the_refused_second_forward_leaves_the_first_one_intact():
    model = tiny_model("llama")
    ids, am, resp = batch()
    with torch.no_grad(), rhythm_capture(model, resp, am) as rec:
        model(ids, attention_mask=am, use_cache=False)
        with pytest.raises(RuntimeError, match="second forward"):
            model(ids, attention_mask=am, use_cache=False)
    assert_rows_match(rec.trace(), dense_reference(model, ids, am, resp))


def test_horizon_warning_comes_once_per_process():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the once is ours, not the warnings registry's
        short_responses()
        short_responses()
    assert len([w for w in caught if "FAI is NaN" in str(w.message)]) == 1


def test_horizon_warning_names_the_longest_response_and_a_horizon_that_fits():
    with pytest.warns(UserWarning) as caught:
        short_responses()
    message = str(caught[0].message)
    assert "the longest response has 20 tokens" in message
    assert "horizon=(2, 16)" in message  # a fix that fits 20 tokens: lo + 1 <= 20


def test_no_horizon_warning_when_one_response_is_long_enough():
    model = tiny_model("llama")
    ids, am, _ = batch(b=2, n=80)
    resp = torch.zeros(2, 80, dtype=torch.bool)
    resp[0, 60:] = True  # 20 tokens: too short for lo = 50
    resp[1, 20:] = True  # 60 tokens: FAI defined on its first 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trace = capture_rhythm(model, ids, am, resp, horizon=(50, 100))
    assert trace.fai[0].isnan().all() and not trace.fai[1].isnan().all()


@pytest.mark.parametrize("family", ["bert_decoder", "gemma2", *sorted(FAMILIES)])
def test_every_causal_family_passes_the_guards(family):
    """The causal guard refuses nothing causal: BERT as a decoder, Gemma2 (soft-capping, sliding window) and
    the families of the capture tests all match the dense reference."""
    model = {"bert_decoder": lambda: tiny_bert(True), "gemma2": tiny_gemma2}.get(family, lambda: tiny_model(family))()
    ids, am, resp = batch()
    trace = capture_rhythm(model, ids, am, resp)
    assert_rows_match(trace, dense_reference(model, ids, am, resp))


def test_numpy_scalars_are_accepted_as_python_numbers():
    model = tiny_model("llama")
    ids, am, resp = batch()
    plain = dict(layers=[1, 3], window=7, horizon=(3, 40), head_fraction=0.5, q=0.25, look_back=2, block_size=32)
    numpy = dict(
        layers=np.array([1, 3]),
        window=np.int64(7),
        horizon=(np.int32(3), np.int64(40)),
        head_fraction=np.float32(0.5),
        q=np.float64(0.25),
        look_back=np.int64(2),
        block_size=np.int16(32),
    )
    expected = capture_rhythm(model, ids, am, resp, **plain)
    got = capture_rhythm(model, ids, am, resp, **numpy)
    assert_rows_match(got, expected)
    assert got.layers == [1, 3] and all(type(layer) is int for layer in got.layers)
    assert type(got.q) is float and type(got.look_back) is int
    assert select_layers(6, np.int64(-1)) == [5]
    gamma = dict(response_mask=resp, q=0.5, gamma_amp=1.5, alpha=0.25)
    np_gamma = dict(response_mask=resp, q=np.float32(0.5), gamma_amp=np.float32(1.5), alpha=np.float16(0.25))
    for strategy in ("uniform", "coupled"):
        trace = expected if strategy == "coupled" else None
        assert torch.equal(credit_gamma(trace, strategy, **np_gamma), credit_gamma(trace, strategy, **gamma))


@pytest.mark.parametrize("value", [np.bool_(True), True, np.float64(10.0), np.int64(0)])
def test_numpy_values_that_are_not_a_window_are_still_refused(value):
    with pytest.raises(ValueError, match=r"window=.* is invalid"):
        capture(window=value)


def test_integer_and_bool_masks_give_the_same_trace():
    model = tiny_model("llama")
    ids, am, resp = batch()
    a = capture_rhythm(model, ids, am.bool(), resp)
    b = capture_rhythm(model, ids, am.int(), resp.to(torch.uint8))
    assert_rows_match(a, b)
