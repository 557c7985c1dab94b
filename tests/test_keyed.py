"""Keyed randomness: the counter-based hash, and sampling that depends on the keys only (not on the batch)."""

import pytest
import torch
from conftest import tiny_model

from lightning_reasonattn.functional.keyed import hash32, keyed_uniform, mix
from lightning_reasonattn.rollout.sampling import KeyedSampling, sample


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: a second thread only waits for the first (and on a busy machine, for a long time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lowbias32(x: int) -> int:
    """Chris Wellons' lowbias32 on Python ints (the reference: plain uint32 arithmetic)."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x735A2D97) & 0xFFFFFFFF
    return x ^ (x >> 15)


def test_hash32_is_lowbias32():
    values = torch.cat([torch.tensor([0, 1, 2, 0xFFFFFFFF, 0x80000000]), torch.randint(0, 2**32, (2000,))])
    assert hash32(values).tolist() == [lowbias32(v) for v in values.tolist()]
    assert hash32(torch.tensor([-1])).item() == lowbias32(0xFFFFFFFF)  # negative keys are taken mod 2^32


def test_keyed_uniform_is_uniform_and_order_sensitive():
    u = keyed_uniform(mix(5, torch.arange(100_000)))
    assert 0 < u.min() and u.max() < 1
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    chi2 = ((counts - 10_000) ** 2 / 10_000).sum().item()
    assert chi2 < 40, chi2  # 9 degrees of freedom: 40 is far in the tail (p < 1e-5)
    assert mix(1, 2).item() != mix(2, 1).item()
    assert torch.equal(mix(3, torch.tensor([7, 8])), torch.stack([mix(3, 7), mix(3, 8)]))  # broadcasting


def warped(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float) -> torch.Tensor:
    """The distribution HF's sampling draws from (temperature, then top-k, then top-p), computed by hand."""
    p = torch.softmax(logits.double() / temperature, -1)
    keep = torch.ones_like(p, dtype=torch.bool)
    order = torch.argsort(p, descending=True)
    if top_k:
        keep[order[top_k:]] = False
    p = torch.where(keep, p, 0.0)
    p = p / p.sum()
    if top_p < 1:  # the smallest set of the most likely tokens whose mass reaches top_p
        sorted_p = p[order]
        before = sorted_p.cumsum(0) - sorted_p
        keep[order[before >= top_p]] = False
        p = torch.where(keep, p, 0.0)
        p = p / p.sum()
    return p


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, None, 1.0), (0.7, 4, 1.0), (1.3, None, 0.8)])
def test_keyed_sampling_draws_from_the_warped_softmax(temperature, top_k, top_p):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0])
    n = 40_000  # one row per key, all at the same prefix: the argmax counts are samples of one distribution
    sampler = KeyedSampling(mix(9, torch.arange(n)), prompt_width=3, temperature=temperature, top_p=top_p, top_k=top_k)
    scores = sampler(torch.zeros(n, 5, dtype=torch.long), logits.expand(n, -1).clone())
    counts = torch.bincount(scores.argmax(-1), minlength=len(logits)).double()
    expected = n * warped(logits, temperature, top_k, top_p)
    allowed = expected > 0
    assert (counts[~allowed] == 0).all()  # filtered tokens are never drawn
    chi2 = ((counts[allowed] - expected[allowed]) ** 2 / expected[allowed]).sum().item()
    assert chi2 < 35, (chi2, counts.tolist(), expected.tolist())  # <= 6 degrees of freedom: p < 1e-5


def test_keyed_sampling_depends_on_the_keys_only():
    """The same keys give the same completions whatever the batch, its padding and the RNG state."""
    model = tiny_model("llama", initializer_range=0.6)  # logits large enough that the model matters
    prompts = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    keys = mix(1, torch.tensor([0, 1, 2]))

    def left_pad(rows):
        width = max(map(len, rows))
        ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        return ids, (ids != 0).long()

    ids, mask = left_pad(prompts)
    torch.manual_seed(0)
    together = sample(model, ids, mask, [1], 0, 8, temperature=0.8, keys=keys)
    for i, prompt in enumerate(prompts):
        torch.manual_seed(100 + i)
        alone = sample(model, *left_pad([prompt]), [1], 0, 8, temperature=0.8, keys=keys[i : i + 1])
        n = int(alone.mask.sum())
        assert int(together.mask[i].sum()) == n
        assert together.ids[i, :n].tolist() == alone.ids[0, :n].tolist()
    # other keys, other completions (the keys do choose)
    other = sample(model, ids, mask, [1], 0, 8, temperature=0.8, keys=mix(2, torch.tensor([0, 1, 2])))
    assert not torch.equal(other.ids, together.ids)
    # the model matters too: at a low temperature the completions are close to greedy
    greedy = sample(model, ids, mask, [1], 0, 8, temperature=0.0)
    cold = sample(model, ids, mask, [1], 0, 8, temperature=0.05, keys=keys)
    assert torch.equal(cold.ids, greedy.ids)
