"""capture_rhythm against the dense reference: eager attention maps (output_attentions=True) + functional math."""

import pytest
import torch
from conftest import FAMILIES, LargestTensor, tiny_model

from lightning_reasonattn.capture import capture_group_maps, capture_rhythm, rhythm_capture
from lightning_reasonattn.capture.blockwise import StatsRecorder
from lightning_reasonattn.functional import rhythm_from_attentions, select_layers

FLOATS = ("waad", "fai", "waad_jumps")
SETS = ("preplan", "anchor", "dominated", "intro")


def batch(b=2, n=130, prompt=17, vocab=97, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (b, n), generator=g)
    resp = torch.zeros(b, n, dtype=torch.bool)
    resp[:, prompt:] = True
    return ids, torch.ones(b, n, dtype=torch.long), resp


def padded_batch(side: str, lengths, prompts, seed: int = 1):
    """``(ids, attention_mask, response_mask, spans)``: the first ``lengths[i]`` tokens of row ``i`` of ``batch``,
    padded on ``side`` to the longest, the first ``prompts[i]`` of them the prompt; ``spans[i]`` = the real tokens."""
    n = max(lengths)
    ids, _, _ = batch(b=len(lengths), n=n, seed=seed)
    padded, am = torch.zeros_like(ids), torch.zeros_like(ids)
    resp = torch.zeros(ids.shape, dtype=torch.bool)
    spans = []
    for i, (length, prompt) in enumerate(zip(lengths, prompts, strict=True)):
        start = n - length if side == "left" else 0
        padded[i, start : start + length] = ids[i, :length]
        am[i, start : start + length] = 1
        resp[i, start + prompt : start + length] = True
        spans.append(slice(start, start + length))
    return padded, am, resp, spans


def eager_maps(model, ids, attention_mask, layers="middle"):
    """[B, L_sel, H, N, N] float64 attention maps of the selected layers, from an eager forward."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            pos = (attention_mask.cumsum(-1) - 1).clamp_min(0)
            out = model(ids, attention_mask=attention_mask, position_ids=pos, output_attentions=True)
    finally:
        model.set_attn_implementation(previous)
    chosen = select_layers(model.config.num_hidden_layers, layers)
    return torch.stack([out.attentions[i] for i in chosen], 1).double(), chosen


def dense_reference(model, ids, attention_mask, response_mask, layers="middle", **kw):
    """Eager maps of the selected layers (float64 math) -> the trace, as the definitions read."""
    maps, chosen = eager_maps(model, ids, attention_mask, layers)
    return rhythm_from_attentions(maps, response_mask, chosen, **kw)


def assert_rows_match(a, b, row_a=0, row_b=0, cols_a=slice(None), cols_b=slice(None), atol=1e-5, sets=True):
    for name in FLOATS:
        x = getattr(a, name)[row_a, cols_a].double()
        y = getattr(b, name)[row_b, cols_b].double()
        assert torch.equal(x.isnan(), y.isnan()), name
        torch.testing.assert_close(x.nan_to_num(), y.nan_to_num(), atol=atol, rtol=0, msg=name)
    torch.testing.assert_close(
        a.head_distance[row_a].double(), b.head_distance[row_b].double(), atol=atol, rtol=0, msg="head_distance"
    )
    assert a.layers == b.layers
    if sets:
        for name in SETS:
            assert torch.equal(getattr(a, name)[row_a, cols_a], getattr(b, name)[row_b, cols_b]), name
        assert set(a.local_heads[row_a].tolist()) == set(b.local_heads[row_b].tolist())
        assert set(a.global_heads[row_a].tolist()) == set(b.global_heads[row_b].tolist())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_matches_dense_reference(family):
    model = tiny_model(family)
    ids, am, resp = batch()
    trace = capture_rhythm(model, ids, am, resp)
    ref = dense_reference(model, ids, am, resp)
    for row in range(ids.shape[0]):
        assert_rows_match(trace, ref, row, row)
    assert trace.waad.dtype == torch.float32 and trace.preplan.dtype == torch.bool
    assert trace.head_distance.shape == (2, len(trace.layers), 4)
    assert trace.anchor.any() and trace.preplan.any()


def test_options_reach_the_math():
    model = tiny_model("llama", num_hidden_layers=5)
    ids, am, resp = batch(n=90)
    opts = dict(layers=[0, 4], window=3, horizon=(2, 30), head_fraction=0.5, q=0.25)
    trace = capture_rhythm(model, ids, am, resp, block_size=7, **opts)
    ref = dense_reference(model, ids, am, resp, **opts)
    assert trace.layers == [0, 4]
    assert_rows_match(trace, ref, 1, 1)
    assert int(trace.local_heads.shape[1]) == 4  # round(0.5 * 2 layers * 4 heads)


@pytest.mark.parametrize("block_size", [1, 5, 64, 1000])
def test_block_size_does_not_change_the_result(block_size):
    model = tiny_model("qwen2")
    ids, am, resp = batch(b=1, n=70)
    a = capture_rhythm(model, ids, am, resp, block_size=block_size)
    b = capture_rhythm(model, ids, am, resp, block_size=128)
    assert_rows_match(a, b)


def test_logits_are_those_of_a_plain_forward():
    model = tiny_model("llama")
    ids, am, resp = batch()
    with torch.no_grad():
        plain = model(ids, attention_mask=am, use_cache=False).logits
    trace, out = capture_rhythm(model, ids, am, resp, return_outputs=True)
    assert torch.equal(out.logits, plain)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_padding_gives_the_unpadded_result(side, family):
    model = tiny_model(family)
    lengths, prompts = [110, 75, 93], [12, 20, 5]
    ids, _, _ = batch(b=3, n=max(lengths))
    padded, am, resp, spans = padded_batch(side, lengths, prompts)
    n = padded.shape[1]
    trace = capture_rhythm(model, padded, am, resp)
    for i, length in enumerate(lengths):
        one_ids = ids[i : i + 1, :length]
        one_resp = resp[i : i + 1, spans[i]]
        alone = capture_rhythm(model, one_ids, None, one_resp)
        ref = dense_reference(model, one_ids, torch.ones_like(one_ids), one_resp)
        assert_rows_match(trace, alone, i, 0, spans[i], slice(None))
        assert_rows_match(trace, ref, i, 0, spans[i], slice(None))
        outside = torch.ones(n, dtype=torch.bool)
        outside[spans[i]] = False
        assert torch.isnan(trace.waad[i, outside]).all() and not trace.anchor[i, outside].any()


def test_never_builds_a_full_attention_map(monkeypatch):
    """Every tensor made while reducing a layer is at most B x H x block x N, never H x N x N."""

    mode = LargestTensor()
    original = StatsRecorder.observe

    def observed(self, *args, **kwargs):
        with mode:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(StatsRecorder, "observe", observed)
    model = tiny_model("llama", num_hidden_layers=3)
    n, heads, block = 300, 4, 16
    ids, am, resp = batch(b=1, n=n, prompt=10)
    capture_rhythm(model, ids, am, resp, block_size=block)
    assert 0 < mode.largest <= heads * block * n
    assert mode.largest < heads * n * n // 10


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_reduce_in_float32(dtype):
    model = tiny_model("llama", dtype=dtype)
    ids, am, resp = batch(b=1)
    trace = capture_rhythm(model, ids, am, resp)
    ref = dense_reference(tiny_model("llama"), ids, am, resp)  # same weights in float32
    assert trace.waad.dtype == torch.float32 and trace.head_distance.dtype == torch.float32
    assert_rows_match(trace, ref, atol=0.05, sets=False)


def test_peft_lora_model():
    peft = pytest.importorskip("peft")
    base = tiny_model("qwen3")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"], init_lora_weights=False)
    model = peft.get_peft_model(base, config).eval()
    ids, am, resp = batch(b=1)
    trace = capture_rhythm(model, ids, am, resp)
    ref = dense_reference(model, ids, am, resp)
    assert_rows_match(trace, ref)
    with model.disable_adapter():  # the adapter changes the attention, so the reference is not trivial
        plain = capture_rhythm(model, ids, am, resp)
    assert not torch.allclose(plain.head_distance, trace.head_distance)


def test_bitsandbytes_4bit_model(tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    tiny_model("llama", hidden_size=64, intermediate_size=128).save_pretrained(tmp_path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(
        tmp_path, quantization_config=quant, attn_implementation="sdpa", device_map="cpu"
    ).eval()
    assert "4bit" in type(model.model.layers[0].self_attn.q_proj).__name__
    ids, am, resp = batch(b=1, n=60)
    trace = capture_rhythm(model, ids, am, resp)
    assert_rows_match(trace, dense_reference(model, ids, am, resp))


def test_config_restored_after_an_error():
    model = tiny_model("llama")
    ids, am, resp = batch(b=1)
    with pytest.raises(RuntimeError, match="boom"):
        with rhythm_capture(model, resp, am):
            raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
    with rhythm_capture(model, resp, am) as rec:
        with torch.no_grad():
            model(ids, attention_mask=am, use_cache=False)
    assert rec.complete
    assert_rows_match(rec.trace(), capture_rhythm(model, ids, am, resp))


def test_eager_model_keeps_eager_logits():
    model = tiny_model("llama", attn="eager")
    ids, am, resp = batch(b=1)
    with torch.no_grad():
        plain = model(ids, use_cache=False).logits
    trace, out = capture_rhythm(model, ids, am, resp, return_outputs=True)
    assert torch.equal(out.logits, plain)
    assert_rows_match(trace, dense_reference(model, ids, am, resp))


class LegacyAttention(torch.nn.Module):
    """Computes its own eager attention without transformers' AttentionInterface, like old remote code."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, hidden_states, position_embeddings, attention_mask=None, output_attentions=False, **kwargs):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

        m = self.inner
        shape = (*hidden_states.shape[:-1], -1, m.head_dim)
        q = m.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = m.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = m.v_proj(hidden_states).view(shape).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        k, v = repeat_kv(k, m.num_key_value_groups), repeat_kv(v, m.num_key_value_groups)
        n = q.shape[2]
        scores = (q @ k.transpose(-1, -2)) * m.scaling
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -torch.inf)
        weights = scores.softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(*hidden_states.shape[:-1], -1)
        return m.o_proj(out), (weights if output_attentions else None)


def test_falls_back_to_eager_maps_with_a_warning():
    model = tiny_model("llama")
    ids, am, resp = batch(b=1)
    ref = dense_reference(model, ids, am, resp)
    for layer in model.model.layers:
        layer.self_attn = LegacyAttention(layer.self_attn)
    with pytest.warns(UserWarning, match="does not route the attention"):
        trace = capture_rhythm(model, ids, am, resp)
    assert_rows_match(trace, ref)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(window=0), ValueError, "window=0"),
        (dict(horizon=(9, 3)), ValueError, r"horizon=\(9, 3\)"),
        (dict(horizon=(-2, 3)), ValueError, r"horizon=\(-2, 3\)"),
        (dict(head_fraction=0.0), ValueError, "head_fraction=0.0"),
        (dict(q=2), ValueError, "q=2"),
        (dict(layers=[6]), ValueError, "layer index 6 is out of range for a model with 6 layers"),
        (dict(block_size=0), ValueError, "block_size=0"),
        (dict(response_mask=torch.ones(2, 5, dtype=torch.bool)), ValueError, r"response_mask has shape \(2, 5\)"),
        (dict(response_mask=torch.zeros(2, 130, dtype=torch.bool)), ValueError, "no response token"),
        (dict(input_ids=torch.ones(130, dtype=torch.long)), ValueError, r"input_ids must be a \[B, N\]"),
    ],
)
def test_bad_input(kwargs, error, match):
    model = tiny_model("llama")
    ids, am, resp = batch()
    args = dict(model=model, input_ids=ids, attention_mask=am, response_mask=resp)
    with pytest.raises(error, match=match):
        capture_rhythm(**{**args, **kwargs})
    assert model.config._attn_implementation == "sdpa"


def test_padding_marked_as_response_is_refused():
    model = tiny_model("llama")
    ids, am, resp = batch(b=1, n=40)
    am[0, -3:] = 0
    with pytest.raises(ValueError, match="marks padding positions"):
        capture_rhythm(model, ids, am, resp)


def test_not_a_causal_lm():
    from transformers import LlamaModel

    ids, am, resp = batch()
    with pytest.raises(TypeError, match="causal language model.*got Linear"):
        capture_rhythm(torch.nn.Linear(2, 2), ids, am, resp)
    headless = LlamaModel(FAMILIES["llama"]())
    with pytest.raises(TypeError, match="got LlamaModel"):
        capture_rhythm(headless, ids, am, resp)


@pytest.mark.parametrize("span", [None, (40, 90)])
def test_group_maps_match_eager_maps(span):
    model = tiny_model("llama")
    ids, am, resp = batch(b=2, n=100)
    am[1, :7] = 0  # left padding in the second row
    resp[1, :7] = False
    trace = capture_rhythm(model, ids, am, resp)
    maps = capture_group_maps(model, ids, trace, am, span=span, block_size=16)
    dense, _ = eager_maps(model, ids, am)
    flat = dense.flatten(1, 2)  # [B, L_sel * H, N, N]
    start, stop = span or (0, 100)
    for b in range(2):
        for name, heads in (("local", trace.local_heads), ("global", trace.global_heads)):
            expected = flat[b, heads[b]].mean(0)[start:stop, start:stop]
            rows = am[b, start:stop].bool()  # padding rows are not defined
            torch.testing.assert_close(maps[name][b][rows].double(), expected[rows], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"span=\(5, 500\)"):
        capture_group_maps(model, ids, trace, am, span=(5, 500))


def test_capture_inside_a_training_forward_leaves_gradients_alone():
    """rhythm_capture around a forward with grad: same loss and gradients as without it (RL single pass)."""
    ids, am, resp = batch(b=2, n=60)
    grads = []
    for capture in (False, True):
        model = tiny_model("qwen3").train()
        if capture:
            with rhythm_capture(model, resp, am) as rec:
                loss = model(ids, attention_mask=am, labels=ids).loss
        else:
            loss = model(ids, attention_mask=am, labels=ids).loss
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert rec.trace().anchor.any()
