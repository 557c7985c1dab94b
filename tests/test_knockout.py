"""knockout_nll against dense references: transformers' eager attention run on hand-built masks (a Llama with GQA,
padded both sides), and a float64 forward of the nanoGPT-style test model written out with explicit masks."""

import pytest
import torch
from conftest import tiny_model
from test_capture import padded_batch
from tiny_gpt import MaskedGPT, TinyGPT

from lightning_reasonattn import knockout_nll

LAYERS, HEADS = 6, 4  # conftest's tiny models


def dense_nll(logits, ids, key_mask):
    """``-log softmax(logits[t - 1])[ids[t]]`` in float64, NaN where ``t`` or ``t - 1`` is padding or ``t = 0``."""
    logp = torch.log_softmax(logits.double(), -1)
    nll = torch.full(ids.shape, float("nan"), dtype=torch.float64)
    nll[:, 1:] = -logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    ok = key_mask.clone()
    ok[:, 0] = False
    ok[:, 1:] &= key_mask[:, :-1]
    return nll.masked_fill(~ok, float("nan"))


def allowed_maps(key_mask, knock, layers, heads=None, num_layers=LAYERS, num_heads=HEADS):
    """``[L, B, H, N, N]`` bool: causal, no padding keys, and key ``s`` hidden from queries ``t > s`` where row ``b``
    knocks ``s`` out in that layer and head; padding rows keep their own key (a finite row, never read)."""
    b, n = key_mask.shape
    t, s = torch.arange(n)[:, None], torch.arange(n)[None, :]
    allowed = ((s <= t) & key_mask[:, None, None, :]).expand(num_layers, b, num_heads, n, n).clone()
    for slot, layer in enumerate(layers):
        for row in range(b):
            for head in range(num_heads):
                if heads is not None and not heads[row, slot, head]:
                    continue
                allowed[layer, row, head] &= ~(knock[row][None, :] & (t > s))
    allowed |= torch.eye(n, dtype=torch.bool)  # padding rows attend to themselves only
    return allowed


def eager_reference(model, ids, key_mask, allowed):
    """NLL of a float64 copy of a transformers model run with eager attention, each layer given its own additive
    mask ``0`` / ``finfo.min`` built from ``allowed[layer]``."""
    ref = tiny_model("llama", attn="eager", dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    low = torch.finfo(torch.float64).min
    handles = []
    for layer, block in enumerate(ref.model.layers):
        mask = torch.zeros(allowed[layer].shape, dtype=torch.float64).masked_fill(~allowed[layer], low)

        def swap(module, args, kwargs, mask=mask):
            return args, {**kwargs, "attention_mask": mask}

        handles.append(block.self_attn.register_forward_pre_hook(swap, with_kwargs=True))
    try:
        with torch.no_grad():
            pos = (key_mask.long().cumsum(-1) - 1).clamp_min(0)
            logits = ref(ids, attention_mask=key_mask.long(), position_ids=pos).logits
    finally:
        for handle in handles:
            handle.remove()
    return dense_nll(logits, ids, key_mask)


def gpt_reference(model, ids, key_mask, allowed):
    """NLL of the test GPT written out in float64: every block's attention ``softmax(q k^T * scale)`` over the keys
    ``allowed[layer]`` lets through, learned positions counted over real tokens."""
    c = model.config
    weights = {k: v.double() for k, v in model.state_dict().items()}
    ref = type(model)(c).double()
    ref.load_state_dict(weights)
    pos = (key_mask.long().cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        x = ref.transformer.wte(ids) + ref.transformer.wpe(pos)
        for layer, block in enumerate(ref.transformer.h):
            q, k, v = block.attn.qkv(block.ln_1(x))
            k = k.repeat_interleave(c.n_head // c.n_kv_head, dim=1)
            v = v.repeat_interleave(c.n_head // c.n_kv_head, dim=1)
            scale = c.scale if c.scale is not None else c.head_dim**-0.5
            scores = (q @ k.transpose(-1, -2)) * scale
            probs = scores.masked_fill(~allowed[layer], float("-inf")).softmax(-1)
            y = (probs @ v).transpose(1, 2).flatten(2)
            x = x + block.attn.proj(y)
            x = x + block.mlp(block.ln_2(x))
        logits = ref.lm_head(ref.transformer.ln_f(x))
    return dense_nll(logits, ids, key_mask)


def as_mask(positions, shape):
    knock = torch.zeros(shape, dtype=torch.bool)
    for row, chosen in enumerate(positions):
        knock[row, list(chosen)] = True
    return knock


def assert_same(nll, ref, atol):
    assert torch.equal(nll.isnan(), ref.isnan())
    torch.testing.assert_close(nll.double().nan_to_num(), ref.nan_to_num(), atol=atol, rtol=0)


def changed(nll, plain):
    """Whether the knockout moved some NLL (else the comparison shows nothing)."""
    return bool(((nll.double() - plain.double()).abs().nan_to_num() > 1e-3).any())


@pytest.mark.parametrize("side", ["left", "right", "none"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_llama_matches_eager_reference(side, attn):
    # 4 query heads on 2 key heads. transformers' eager attention takes the softmax in float32, where a float64
    # model's padding rows (all finfo(float64).min) turn to NaN: the eager model runs in float32.
    dtype, atol = (torch.float64, 1e-6) if attn == "sdpa" else (torch.float32, 1e-4)
    model = tiny_model("llama", attn=attn, dtype=dtype)
    lengths = [40, 33, 40, 26] if side != "none" else [40] * 4
    ids, am, _, spans = padded_batch("left" if side == "none" else side, lengths, [5] * 4)
    start = [span.start for span in spans]
    positions = [[start[0] + 3, start[0] + 17], [], [start[2] + 1, start[2] + 2, start[2] + 30], [start[3] + 20]]
    key_mask = am.bool()
    nll = knockout_nll(model, ids, positions, attention_mask=am)
    ref = eager_reference(model, ids, key_mask, allowed_maps(key_mask, as_mask(positions, ids.shape), range(LAYERS)))
    assert_same(nll, ref, atol=atol)
    plain = eager_reference(model, ids, key_mask, allowed_maps(key_mask, torch.zeros_like(key_mask), []))
    assert changed(nll[[0, 2, 3]], plain[[0, 2, 3]])
    assert_same(nll[1:2], plain[1:2], atol=atol)  # an empty set: the plain forward


def test_llama_heads_and_layers_match_eager_reference():
    model = tiny_model("llama", dtype=torch.float64)
    ids, am, _, spans = padded_batch("left", [36, 30, 36], [4] * 3)
    s = [span.start for span in spans]
    positions = [[s[0] + 5, s[0] + 9], [s[1] + 2], [s[2] + 12]]
    layers = [1, 4]
    heads = torch.zeros(3, 2, HEADS, dtype=torch.bool)
    heads[0, 0, 1] = heads[0, 1, 3] = heads[1, 1, 0] = True
    heads[2] = True  # every head of both layers
    nll = knockout_nll(model, ids, positions, attention_mask=am, layers=layers, heads=heads)
    key_mask = am.bool()
    ref = eager_reference(model, ids, key_mask, allowed_maps(key_mask, as_mask(positions, ids.shape), layers, heads))
    assert_same(nll, ref, atol=1e-6)
    everywhere = eager_reference(model, ids, key_mask, allowed_maps(key_mask, as_mask(positions, ids.shape), layers))
    assert changed(nll[:2], everywhere[:2])  # knocking out some heads is not knocking out all


GPTS = {
    "flag": lambda: TinyGPT(causal="flag"),
    "bool-gqa": lambda: MaskedGPT(causal="bool", n_kv_head=2),
    "float-gqa-repeat": lambda: MaskedGPT(causal="float", n_kv_head=2, gqa="repeat"),
}


@pytest.mark.parametrize("variant", sorted(GPTS))
def test_sdpa_model_matches_dense_forward(variant):
    model = GPTS[variant]()  # float32: the test model's float mask is float32 (SDPA misreads it under float64 queries)
    side = "right" if variant == "flag" else "left"  # TinyGPT takes no mask: right padding is exact without one
    ids, am, _, spans = padded_batch(side, [50, 41, 50], [6] * 3)
    s = [span.start for span in spans]
    positions = [[s[0] + 10, s[0] + 11, s[0] + 40], [s[1] + 7], []]
    key_mask = am.bool()
    nll = knockout_nll(model, ids, positions, attention_mask=am, layers="all")
    knock = as_mask(positions, ids.shape)
    ref = gpt_reference(model, ids, key_mask, allowed_maps(key_mask, knock, range(4), num_layers=4))
    assert_same(nll, ref, atol=1e-5)
    plain = gpt_reference(model, ids, key_mask, allowed_maps(key_mask, torch.zeros_like(knock), [], num_layers=4))
    assert changed(nll[:2], plain[:2])


def test_sdpa_heads_of_some_layers_match_dense_forward():
    model = MaskedGPT(causal="bool").double()
    ids, am, _, _ = padded_batch("left", [44, 44], [3, 3])
    positions = [[8, 20], [8, 20]]
    heads = torch.zeros(2, 1, HEADS, dtype=torch.bool)
    heads[0, 0, 2] = True
    heads[1, 0] = True
    nll = knockout_nll(model, ids, positions, attention_mask=am, layers=[2], heads=heads)
    key_mask = am.bool()
    ref = gpt_reference(model, ids, key_mask, allowed_maps(key_mask, as_mask(positions, ids.shape), [2], heads, 4))
    assert_same(nll, ref, atol=1e-10)
    assert changed(nll[1:], nll[:1])


@pytest.mark.parametrize("make", [lambda: tiny_model("llama"), lambda: TinyGPT()], ids=["llama", "gpt"])
def test_empty_sets_give_the_plain_forward_exactly(make):
    model = make()
    ids = torch.randint(0, 97, (3, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(ids)
    plain = out.logits if hasattr(out, "logits") else out
    seen = []
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else model.lm_head
    handle = head.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        nll = knockout_nll(model, ids, [[], [], []])
    finally:
        handle.remove()
    assert torch.equal(seen[0], plain)  # bit for bit the plain forward
    ref = dense_nll(plain, ids, torch.ones(ids.shape, dtype=torch.bool))
    assert_same(nll, ref, atol=1e-5)


def test_sets_batched_equal_sets_alone():
    model = tiny_model("llama")
    seq = torch.randint(0, 97, (1, 48), generator=torch.Generator().manual_seed(3))
    sets = [[], [4], [4, 30], [10, 11, 12]]
    together = knockout_nll(model, seq.repeat(len(sets), 1), sets)
    for row, chosen in enumerate(sets):
        alone = knockout_nll(model, seq, [chosen])
        torch.testing.assert_close(together[row : row + 1], alone, atol=1e-5, rtol=0, equal_nan=True)
    # each set leaves the tokens up to one after its first position alone
    for row, chosen in enumerate(sets[1:], 1):
        first = min(chosen)
        torch.testing.assert_close(together[row, 1 : first + 2], together[0, 1 : first + 2], atol=1e-5, rtol=0)
        assert changed(together[row, first + 2 :], together[0, first + 2 :])


def test_a_bool_mask_of_positions_equals_the_lists():
    model = TinyGPT()
    ids = torch.randint(0, 97, (2, 25), generator=torch.Generator().manual_seed(1))
    positions = [[2, 9], [0, 24]]
    a = knockout_nll(model, ids, positions)
    b = knockout_nll(model, ids, as_mask(positions, ids.shape))
    assert torch.equal(a.nan_to_num(), b.nan_to_num())


BAD = [
    ("rows", lambda m, ids, am: knockout_nll(m, ids, [[1]]), ValueError, "rows for a batch of 2"),
    ("range", lambda m, ids, am: knockout_nll(m, ids, [[1], [30]]), ValueError, "outside the 20 columns"),
    ("negative", lambda m, ids, am: knockout_nll(m, ids, [[-1], []]), ValueError, "outside the 20 columns"),
    ("float", lambda m, ids, am: knockout_nll(m, ids, [[1.5], []]), ValueError, "integer positions"),
    ("padding", lambda m, ids, am: knockout_nll(m, ids, [[0], []], attention_mask=am), ValueError, "padding"),
    ("mask-shape", lambda m, ids, am: knockout_nll(m, ids, torch.ones(2, 3, dtype=torch.bool)), ValueError, "[2, 20]"),
    (
        "heads-shape",
        lambda m, ids, am: knockout_nll(m, ids, [[1], []], heads=torch.ones(2, 3, 4, dtype=torch.bool)),
        ValueError,
        "[2, 6, H]",
    ),
    (
        "heads-count",
        lambda m, ids, am: knockout_nll(m, ids, [[1], []], layers=[0], heads=torch.ones(2, 1, 3, dtype=torch.bool)),
        ValueError,
        "3 heads per layer",
    ),
    ("layers", lambda m, ids, am: knockout_nll(m, ids, [[1], []], layers=[9]), ValueError, "out of range"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_refused_with_the_fix(case):
    _, call, error, words = case
    model = tiny_model("llama")
    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids)
    am[0, :3] = 0
    with pytest.raises(error) as info:
        call(model, ids, am)
    assert words in str(info.value)


def test_an_attention_without_custom_masks_is_refused():
    model = tiny_model("llama")
    model.config._attn_implementation_internal = "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        knockout_nll(model, torch.zeros(1, 5, dtype=torch.long), [[1]])


def test_model_is_restored_after_a_knockout():
    model = tiny_model("llama")
    ids = torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids).logits
    knockout_nll(model, ids, [[3]])
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(before, after)
    assert model.config._attn_implementation == "sdpa"


def test_multihead_attention_layers_are_refused():
    from test_hostile_plain_models import MHAModel

    ids = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match=r"'attn\.0' runs nn\.MultiheadAttention: a knockout rewrites"):
        knockout_nll(MHAModel(), ids, [[3]], attention_modules="attn.*")
