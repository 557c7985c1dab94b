"""Rollouts on plain PyTorch causal LMs: the decode loop against ``generate``, the KV cache against the recomputed
prefix, and the measurement of left-padded rows against each row measured alone, unpadded."""

import pytest
import torch
from conftest import tiny_model
from test_capture import assert_rows_match
from tiny_gpt import TinyGPT

from lightning_reasonattn import capture_rhythm
from lightning_reasonattn.functional.keyed import mix
from lightning_reasonattn.models import NanoGPT
from lightning_reasonattn.rollout.context import ContextLengthError
from lightning_reasonattn.rollout.decode import decode, offers_kv_cache
from lightning_reasonattn.rollout.logprobs import completion_logprobs, measure
from lightning_reasonattn.rollout.sampling import Completions, join_completions, sample
from lightning_reasonattn.settings import RhythmSettings


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LENGTHS = [9, 3, 5, 9, 1, 7]  # prompts of different lengths, one of a single token
SAMPLINGS = {
    "greedy": dict(temperature=0),
    "keyed": dict(temperature=0.7, top_k=20, top_p=0.9),
    "keyed, temperature 1 only": dict(temperature=1.0),
}


def left_padded(lengths, vocab=97, seed=1, pad=0):
    """``(ids, mask)``: random prompts of ``lengths`` tokens (ids 3 and up), left-padded with ``pad``."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = (torch.arange(width)[None] >= (width - torch.tensor(lengths))[:, None]).long()
    ids = torch.randint(3, vocab, (len(lengths), width), generator=g).masked_fill(mask == 0, pad)
    return ids, mask


def how(name, rows):
    kw = dict(SAMPLINGS[name])
    if kw["temperature"]:
        kw["keys"] = mix(5, torch.arange(rows))
    return kw


def two_end_ids(reference: Completions) -> list[int]:
    """Two tokens that rows reach at different points (so that rows end at different steps, some never)."""
    return [int(reference.ids[1, 4]), int(reference.ids[3, 9])]


@pytest.mark.parametrize("name", sorted(SAMPLINGS))
def test_loop_on_llama_as_a_plain_module_equals_generate(name):
    """A transformers Llama, called as ``model(ids)`` like any module (no mask, no cache), decodes what ``generate``
    gives on the left-padded batch, token for token."""
    model = tiny_model("llama", num_hidden_layers=2, initializer_range=0.3)  # peaked logits: no near-ties
    ids, mask = left_padded(LENGTHS)
    kw = how(name, len(LENGTHS))
    first = sample(model, ids, mask, [0], 0, 16, **kw)  # generate: the reference
    ends = two_end_ids(first)
    reference = sample(model, ids, mask, ends, 0, 16, **kw)
    out = decode(model, ids, mask, ends, 0, 16, **kw)
    assert torch.equal(out.ids, reference.ids)
    assert torch.equal(out.mask, reference.mask) and torch.equal(out.truncated, reference.truncated)
    assert 0 < int(reference.truncated.sum()) < len(LENGTHS)  # some rows ended early, some ran to the limit


def test_loop_stops_when_every_row_has_ended_as_generate():
    model = tiny_model("llama", num_hidden_layers=2, initializer_range=0.3)
    ids, mask = left_padded(LENGTHS)
    first = sample(model, ids, mask, [0], 0, 16, temperature=0)
    ends = sorted({int(first.ids[i, 2]) for i in range(len(LENGTHS))})  # every row ends by its third token
    reference, out = (f(model, ids, mask, ends, 0, 16, temperature=0) for f in (sample, decode))
    assert out.ids.shape == reference.ids.shape and out.ids.shape[1] <= 3
    assert torch.equal(out.ids, reference.ids) and not out.truncated.any()


def test_unkeyed_sampling_draws_from_the_warped_softmax():
    """Unkeyed, the loop samples from the process RNG: with top-k 4, the first tokens of 4000 rows of one prompt
    follow the softmax of the 4 likeliest logits (a chi-square test), and no other token is drawn."""
    model = TinyGPT(seed=3, n_layer=2).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40)  # a spread distribution over a few likely tokens
    prompt = torch.tensor([[5, 9, 2, 7]])
    logits = model(prompt)[0, -1].double()
    top = logits.topk(4)
    p = torch.softmax(top.values / 0.8, -1)
    rows = 4000
    torch.manual_seed(0)
    out = decode(model, prompt.repeat(rows, 1), torch.ones(rows, 4), [], 0, 1, temperature=0.8, top_k=4)
    first = out.ids[:, 0]
    assert torch.isin(first, top.indices).all()
    counts = torch.stack([(first == t).sum() for t in top.indices]).double()
    chi2 = ((counts - rows * p) ** 2 / (rows * p)).sum().item()
    assert chi2 < 25, (counts, rows * p)  # 3 degrees of freedom: p < 1e-4 past 21


def test_rows_decode_alone_as_in_a_batch():
    """Greedy, each left-padded row of a plain model decodes what it decodes alone without padding."""
    model = TinyGPT(seed=2, n_layer=2).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    ids, mask = left_padded(LENGTHS)
    batch = decode(model, ids, mask, [7], 0, 12, temperature=0)
    for i, n in enumerate(LENGTHS):
        alone = decode(model, ids[i : i + 1, -n:], torch.ones(1, n), [7], 0, 12, temperature=0)
        width = alone.ids.shape[1]
        assert torch.equal(batch.ids[i, :width], alone.ids[0]) and not batch.mask[i, width:].any()


def litgpt(seed=0):
    litgpt_model = pytest.importorskip("litgpt.model", reason="litgpt is not installed: pip install --no-deps litgpt")
    from litgpt.config import Config

    torch.manual_seed(seed)
    config = Config(n_layer=2, n_head=4, n_query_groups=2, n_embd=32, block_size=64, vocab_size=97,
                    padded_vocab_size=128, bias=False)  # fmt: skip
    model = litgpt_model.GPT(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    return model


@pytest.mark.parametrize("name", sorted(SAMPLINGS))
@pytest.mark.parametrize("family", ["litgpt", "nanogpt"])
def test_kv_cache_decodes_what_the_recomputed_prefix_decodes(family, name):
    if family == "litgpt":
        model = litgpt()
    else:
        torch.manual_seed(0)
        model = NanoGPT(97, 64, 2, 4, 32).eval()
        with torch.no_grad():
            model.lm_head.weight.mul_(20)
    assert offers_kv_cache(model)
    ids, mask = left_padded(LENGTHS)
    kw = how(name, len(LENGTHS))
    first = decode(model, ids, mask, [0], 0, 16, use_cache=False, **kw)
    ends = two_end_ids(first)
    cached = decode(model, ids, mask, ends, 0, 16, **kw)
    recomputed = decode(model, ids, mask, ends, 0, 16, use_cache=False, **kw)
    assert torch.equal(cached.ids, recomputed.ids) and torch.equal(cached.mask, recomputed.mask)
    assert 0 < int(cached.truncated.sum()) < len(LENGTHS)
    blocks = model.transformer.h
    assert all(block.attn.kv_cache is None for block in blocks)  # cleared after the call
    assert torch.equal(sample(model, ids, mask, ends, 0, 16, **kw).ids, cached.ids)  # sample() dispatches here


def test_nanogpt_cache_gives_the_plain_forward():
    torch.manual_seed(0)
    model = NanoGPT(50, 32, 3, 2, 16).eval()
    ids = torch.randint(0, 50, (3, 20))
    with torch.no_grad():
        full = model(ids)
        model.set_kv_cache(batch_size=4)
        parts = [model(ids[:, :7], input_pos=torch.arange(7))]
        parts += [model(ids[:, t : t + 1], input_pos=torch.tensor([t])) for t in range(7, 20)]
        model.clear_kv_cache()
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="set_kv_cache"):
        model(ids[:, :2], input_pos=torch.arange(2))


def test_loop_refuses_what_it_cannot_decode():
    model = NanoGPT(50, 16, 1, 2, 8).eval()
    ids, mask = left_padded([4, 2], vocab=50)
    with pytest.raises(ContextLengthError, match=r"model's context of 16 \(its max_seq_length\)"):
        decode(model, ids, mask, [1], 0, 13)
    with pytest.raises(ValueError, match="prompt row 1 holds no real token"):
        decode(model, ids, torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]]), [1], 0, 4)
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        decode(model, ids, mask, [1], 0, 0)
    with pytest.raises(ValueError, match=r"the id 60, outside the vocabulary \[0, 50\) of NanoGPT"):
        decode(model, ids.masked_fill(mask.bool(), 60), mask, [1], 0, 2)
    with pytest.raises(TypeError, match="must return logits"):
        decode(torch.nn.Identity(), ids, mask, [1], 0, 2)  # returns the ids: [B, N], no vocabulary


# ------------------------------------------------------------------------------------------------ measuring
def padded_batch(prompts, completions, pad=0):
    """The rollout layout: prompts left-padded to P, completions right-padded to T (the mask after their end 0)."""
    width_p, width_t = max(map(len, prompts)), max(map(len, completions))
    ids = torch.tensor([[pad] * (width_p - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width_p - len(p)) + [1] * len(p) for p in prompts])
    c_ids = torch.tensor([c + [pad] * (width_t - len(c)) for c in completions])
    c_mask = torch.tensor([[True] * len(c) + [False] * (width_t - len(c)) for c in completions])
    return join_completions(ids, mask, Completions(c_ids, c_mask, ~c_mask.all(1)))


def test_measure_of_left_padded_rows_equals_each_row_alone():
    """A plain model that takes no mask: log-probabilities, entropies and the rhythm of each left-padded row equal
    those of the row alone, unpadded (a plain forward and capture_rhythm)."""
    model = TinyGPT(seed=4, n_layer=6).eval()
    g = torch.Generator().manual_seed(0)
    shape = [(7, 40), (2, 25), (12, 33), (4, 40)]  # (prompt, completion) lengths
    prompts = [torch.randint(1, 97, (p,), generator=g).tolist() for p, _ in shape]
    completions = [torch.randint(1, 97, (c,), generator=g).tolist() for _, c in shape]
    batch = padded_batch(prompts, completions)
    settings = RhythmSettings(horizon=(3, 20))
    measured = measure(model, batch, temperature=0.7, rhythm=settings)
    assert torch.allclose(completion_logprobs(model, batch, 0.7), measured.logp)
    width = batch.width
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        ids = torch.tensor([prompt + completion])
        c = len(completion)
        with torch.no_grad():
            logp_all = torch.log_softmax(model(ids)[0, len(prompt) - 1 : -1].double() / 0.7, -1)
        logp = logp_all.gather(-1, ids[0, len(prompt) :, None])[:, 0]
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        torch.testing.assert_close(measured.logp[i, :c].double(), logp, atol=1e-5, rtol=0)
        torch.testing.assert_close(measured.entropy[i, :c].double(), entropy, atol=1e-5, rtol=0)
        assert (measured.logp[i, c:] == 0).all() and (measured.entropy[i, c:] == 0).all()
        response = torch.tensor([[False] * len(prompt) + [True] * c])
        alone = capture_rhythm(model, ids, None, response, horizon=settings.horizon)
        columns = slice(batch.ids.shape[1] - width - len(prompt), batch.ids.shape[1] - width + c)
        assert_rows_match(measured.trace, alone, i, 0, cols_a=columns, cols_b=slice(None))
        padding = torch.ones(batch.ids.shape[1], dtype=torch.bool)
        padding[columns] = False
        assert measured.trace.waad[i, padding].isnan().all() and not measured.trace.anchor[i, padding].any()
    assert torch.equal(measured.trace.response_mask, batch.response_mask)


def test_measure_carries_the_gradient_of_a_plain_model():
    model = TinyGPT(seed=5, n_layer=2).train()
    batch = padded_batch([[3, 4, 5], [6]], [[7, 8], [9, 10, 11]])
    logp = measure(model, batch).logp
    (logp * batch.completion_mask).sum().backward()
    assert model.transformer.wte.weight.grad is not None and model.transformer.wte.weight.grad.abs().sum() > 0
