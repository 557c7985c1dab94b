"""Plain PyTorch models through the SDPA route, as a new user brings them: built from ``nn.MultiheadAttention`` or
``nn.TransformerEncoderLayer``, blocks nested in stages, left in train mode with dropout, on the meta device, or
run by a second thread while a capture is open.

References are independent of the capture: ``nn.MultiheadAttention`` itself gives each head's map
(``need_weights=True, average_attn_weights=False``), and the nanoGPT-style models have the dense maps of
``tiny_gpt.dense_maps``; both go through the functional math (``rhythm_from_attentions``).
"""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import BadInput, tiny_model
from test_capture import assert_rows_match, batch, dense_reference
from tiny_gpt import Block, GPTConfig, TinyGPT, dense_maps
from torch import nn

from lightning_reasonattn import capture_rhythm, rhythm_capture
from lightning_reasonattn.functional import rhythm_from_attentions, select_layers

HORIZON = (4, 20)


class MHAModel(nn.Module):
    """A causal LM of ``nn.MultiheadAttention`` layers: ``model(input_ids) -> logits``."""

    def __init__(self, layers=4, width=32, heads=4, batch_first=True, need_weights=False, mask="bool", padding=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(97, width)
        self.attn = nn.ModuleList(nn.MultiheadAttention(width, heads, batch_first=batch_first) for _ in range(layers))
        self.head = nn.Linear(width, 97)
        self.batch_first, self.need_weights, self.mask, self.padding = batch_first, need_weights, mask, padding
        self.eval()

    def forward(self, input_ids, attention_mask=None):
        n = input_ids.shape[1]
        future = torch.ones(n, n, dtype=torch.bool).triu(1)  # MultiheadAttention's bool mask: True = blocked
        mask = future if self.mask == "bool" else torch.zeros(n, n).masked_fill(future, float("-inf"))
        pad = ~attention_mask.bool() if self.padding and attention_mask is not None else None
        x = self.emb(input_ids)
        x = x if self.batch_first else x.transpose(0, 1)
        for attn in self.attn:
            x = x + attn(x, x, x, attn_mask=mask, key_padding_mask=pad, need_weights=self.need_weights)[0]
        return self.head(x if self.batch_first else x.transpose(0, 1))


class EncoderModel(nn.Module):
    """A causal LM of ``nn.TransformerEncoder`` layers with a causal mask (``is_causal=True``)."""

    def __init__(self, layers=4, width=32, heads=4, norm_first=False):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(97, width)
        layer = nn.TransformerEncoderLayer(width, heads, 64, dropout=0.1, batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, 97)
        self.eval()

    def forward(self, input_ids):
        mask = nn.Transformer.generate_square_subsequent_mask(input_ids.shape[1])
        return self.head(self.encoder(self.emb(input_ids), mask=mask, is_causal=True))


class StagedGPT(TinyGPT):
    """``TinyGPT``'s blocks nested in stages, ``stages[i]["blocks"][j]`` (3 per stage): the same computation."""

    def __init__(self, **config):
        super().__init__(n_layer=6, **config)
        blocks = list(self.transformer.h)
        del self.transformer["h"]
        self.stages = nn.ModuleList(nn.ModuleDict({"blocks": nn.ModuleList(blocks[i : i + 3])}) for i in (0, 3))

    def forward(self, input_ids):
        pos = torch.arange(input_ids.shape[1])[None]
        x = self.transformer.wte(input_ids) + self.transformer.wpe(pos)
        for stage in self.stages:
            for block in stage["blocks"]:
                x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def mha_reference(model, ids, am, resp, layers, **kw):
    """The rhythm from the per-head maps that each ``nn.MultiheadAttention`` returns itself, called again on the
    inputs and masks of its call in a plain forward."""
    calls = []

    def again(module, args, kwargs, output):
        kwargs = {**kwargs, "need_weights": True, "average_attn_weights": False}
        kwargs.pop("is_causal", None)  # a hint that needs_weights=True ignores: the mask itself is used
        with torch.no_grad():
            calls.append(module.forward(*args[:3], **kwargs)[1])

    modules = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    handles = [m.register_forward_hook(again, with_kwargs=True) for m in modules]
    try:
        with torch.no_grad():
            model(ids, attention_mask=am) if "attention_mask" in model.forward.__code__.co_varnames else model(ids)
    finally:
        for handle in handles:
            handle.remove()
    maps = torch.stack([calls[layer] for layer in layers], 1).double()  # [B, L_sel, H, N, N]
    maps = maps * am.bool()[:, None, None, None, :]  # padding keys: 0 (the key padding mask gives them 0 already)
    return rhythm_from_attentions(maps, resp, layers, **kw)


MHA_VARIANTS = {
    "batch_first, need_weights=False, bool mask": {},
    "need_weights=True (no SDPA call inside)": {"need_weights": True},
    "sequence first, float mask": {"batch_first": False, "mask": "float"},
    "key_padding_mask": {"padding": True},
}


@pytest.mark.parametrize("variant", MHA_VARIANTS)
def test_multihead_attention_models_match_their_own_maps(variant):
    model = MHAModel(**MHA_VARIANTS[variant])
    ids, am, resp = batch(b=2, n=40, prompt=10)
    if MHA_VARIANTS[variant].get("padding"):
        am[1, 34:] = 0  # right padding, which the model passes as key_padding_mask
        resp[1, 34:] = False
    with torch.no_grad():
        plain = model(ids, attention_mask=am)
    trace, logits = capture_rhythm(model, ids, am, resp, horizon=HORIZON, return_outputs=True)
    assert torch.equal(logits, plain)  # the fused eval path of a plain forward, bit for bit
    ref = mha_reference(model, ids, am, resp, trace.layers, horizon=HORIZON)
    for row in range(2):
        assert_rows_match(trace, ref, row, row)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layers_match_their_own_maps_and_logits(norm_first):
    model = EncoderModel(norm_first=norm_first)
    ids, am, resp = batch(b=2, n=40, prompt=10)
    with torch.no_grad():
        plain = model(ids)  # eval, no grad: PyTorch's fused encoder-layer kernel
    trace, logits = capture_rhythm(model, ids, am, resp, horizon=HORIZON, return_outputs=True)
    assert torch.equal(logits, plain)
    ref = mha_reference(model, ids, am, resp, trace.layers, horizon=HORIZON)
    assert_rows_match(trace, ref, 0, 0)
    assert_rows_match(trace, ref, 1, 1)


def test_named_multihead_attention_modules_are_measured():
    model = MHAModel(layers=5)
    ids, am, resp = batch(b=1, n=40, prompt=10)
    for named in ("attn.*", list(model.attn)):
        trace = capture_rhythm(model, ids, am, resp, horizon=HORIZON, layers="all", attention_modules=named)
        assert_rows_match(trace, mha_reference(model, ids, am, resp, list(range(5)), horizon=HORIZON))


def test_blocks_nested_in_stages_are_found_in_order():
    staged = StagedGPT()
    flat = TinyGPT(n_layer=6)  # the same seed: the same weights, blocks in one list
    ids, am, resp = batch(b=2, n=60, prompt=15)
    trace = capture_rhythm(staged, ids, am, resp, horizon=HORIZON, layers="all")
    layers = select_layers(6, "all")
    ref = rhythm_from_attentions(dense_maps(flat, ids, am, layers), resp, layers, horizon=HORIZON)
    for row in range(2):
        assert_rows_match(trace, ref, row, row)


def test_a_model_in_train_mode_is_measured_without_dropout_and_left_in_train_mode():
    model = TinyGPT(n_layer=6, dropout=0.5).train()
    ids, am, resp = batch(b=2, n=60, prompt=15)
    first = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    second = capture_rhythm(model, ids, am, resp, horizon=HORIZON)
    assert model.training and all(m.training for m in model.modules())
    layers = select_layers(6, "middle")
    ref = rhythm_from_attentions(dense_maps(model.eval(), ids, am, layers), resp, layers, horizon=HORIZON)
    for trace in (first, second):
        assert_rows_match(trace, ref, 1, 1)


@pytest.mark.parametrize("route", ["sdpa", "transformers"])
def test_another_threads_forward_is_left_unmeasured(route):
    model = TinyGPT(n_layer=6) if route == "sdpa" else tiny_model("llama")
    ids, am, resp = batch(b=2, n=60, prompt=15)
    run = (lambda: model(ids)) if route == "sdpa" else (lambda: model(ids, attention_mask=am, use_cache=False))
    errors = []

    def plain_forward():
        try:
            with torch.no_grad():
                run()
        except Exception as err:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(err)

    with torch.no_grad(), rhythm_capture(model, resp, am, horizon=HORIZON) as rec:
        other = threading.Thread(target=plain_forward)
        other.start()
        other.join()
        run()
    assert not errors, errors
    if route == "sdpa":
        layers = select_layers(6, "middle")
        ref = rhythm_from_attentions(dense_maps(model, ids, am, layers), resp, layers, horizon=HORIZON)
    else:
        ref = dense_reference(model, ids, am, resp, horizon=HORIZON)
    assert_rows_match(rec.trace(), ref, 1, 1)


# ------------------------------------------------------------------------------------------ refusals


def meta_model(kind: str) -> nn.Module:
    with torch.device("meta"):
        return TinyGPT() if kind == "nanoGPT" else tiny_model("llama")


@pytest.mark.parametrize("kind", ["nanoGPT", "transformers"])
def test_a_model_on_the_meta_device_is_refused_by_name(kind):
    ids, am, resp = batch(b=1, n=40, prompt=10)
    message = r"has tensors on the meta device \('.*' holds a shape but no values\).*to_empty"
    with pytest.raises(ValueError, match=message):
        capture_rhythm(meta_model(kind), ids, am, resp, horizon=HORIZON)


def test_attention_modules_that_never_run_are_named():
    model = TinyGPT(n_layer=4)
    model.spare = nn.ModuleList(Block(GPTConfig()) for _ in range(4))  # never called by forward
    ids, am, resp = batch(b=1, n=40, prompt=10)
    with pytest.raises(RuntimeError) as info:
        capture_rhythm(model, ids, am, resp, horizon=HORIZON, attention_modules="spare.*")
    message = str(info.value)
    assert "ran 0 of its 4 attention modules; never run: 'spare.0', 'spare.1', 'spare.2', ..." in message, message
    assert "rhythm_capture block" not in message  # the user never opened one


def test_multihead_attention_with_an_extra_key_is_refused():
    model = MHAModel()
    model.attn[2] = nn.MultiheadAttention(32, 4, batch_first=True, add_bias_kv=True)
    ids, am, resp = batch(b=1, n=40, prompt=10)
    with pytest.raises(ValueError, match=r"'attn\.2' \(layer 2\) is an nn\.MultiheadAttention with add_bias_kv"):
        capture_rhythm(model, ids, am, resp, horizon=HORIZON, layers="all")


BAD_INPUTS = [
    *(
        BadInput(f"nn.MultiheadAttention model: {name}", "test_multihead_attention_models_match_their_own_maps")
        for name in MHA_VARIANTS
    ),
    *(
        BadInput(
            f"nn.TransformerEncoder model ({order})", "test_transformer_encoder_layers_match_their_own_maps_and_logits"
        )
        for order in ("post-norm", "pre-norm")
    ),
    *(
        BadInput(f"nn.MultiheadAttention modules named by {how}", "test_named_multihead_attention_modules_are_measured")
        for how in ("pattern", "list")
    ),
    BadInput("blocks nested in stages[i]['blocks'][j]", "test_blocks_nested_in_stages_are_found_in_order"),
    BadInput(
        "a model left in train mode with dropout",
        "test_a_model_in_train_mode_is_measured_without_dropout_and_left_in_train_mode",
    ),
    *(
        BadInput(f"a second thread's forward ({route})", "test_another_threads_forward_is_left_unmeasured")
        for route in ("sdpa", "transformers")
    ),
    *(
        BadInput(f"a {kind} model on the meta device", "test_a_model_on_the_meta_device_is_refused_by_name")
        for kind in ("nanoGPT", "transformers")
    ),
    BadInput("named attention modules that never run", "test_attention_modules_that_never_run_are_named"),
    BadInput("nn.MultiheadAttention with add_bias_kv", "test_multihead_attention_with_an_extra_key_is_refused"),
]
"""Every case tried here, once (the count is in docs/troubleshooting.md, "Robustness")."""
