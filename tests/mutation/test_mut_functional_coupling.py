"""functional/coupling.py: survivors of the mutation run (issue 26): ratios of sums, token entropy in chunks."""

import math

import pytest
import torch

from lightning_reasonattn.functional.coupling import logits_entropy, ratio_of_sums, token_entropy


def test_ratio_of_sums_divides_by_one_and_refuses_zero():
    """Bug class: the "denominator is 0" test confused with "is 1": a ratio over one peak read as undefined, or a
    ratio over no peak read as its numerator."""
    sums = {"a": torch.tensor([3.0, 3.0, 0.0]), "b": torch.tensor([1.0, 0.0, 2.0])}
    got = ratio_of_sums(sums, ("a", "b")).tolist()
    assert got[0] == 3.0 and math.isnan(got[1]) and got[2] == 0.0
    four = {"a": torch.tensor(3.0), "b": torch.tensor(1.0), "c": torch.tensor(6.0), "d": torch.tensor(3.0)}
    assert ratio_of_sums(four, ("a", "b", "c", "d")).item() == 1.5  # (3 / 1) / (6 / 3)


def dense_entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(logits.double(), -1)
    return -(p * p.log()).sum(-1)


def test_entropy_runs_one_block_per_chunk(monkeypatch):
    """Bug class: the chunk loop steps by 1 (every position recomputed ``chunk`` times: the work of a whole
    ``[B, N, V]`` pass per token), or ``token_entropy`` drops its ``chunk`` (the memory bound the caller asked for).
    10 positions in chunks of 4 are 3 blocks; values against a dense float64 reference."""
    calls = []
    real = torch.log_softmax

    def counting(x, *args, **kwargs):
        calls.append(tuple(x.shape))
        return real(x, *args, **kwargs)

    logits = torch.randn(2, 11, 5, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(torch, "log_softmax", counting)
    got = logits_entropy(logits[:, :10], chunk=4)
    assert calls == [(2, 4, 5), (2, 4, 5), (2, 2, 5)]
    calls.clear()
    shifted = token_entropy(logits, chunk=4)
    assert calls == [(2, 4, 5), (2, 4, 5), (2, 2, 5)]
    torch.testing.assert_close(got.double(), dense_entropy(logits[:, :10]))
    assert torch.isnan(shifted[:, 0]).all()
    torch.testing.assert_close(shifted[:, 1:].double(), dense_entropy(logits[:, :10]))


@pytest.mark.parametrize("fn", [logits_entropy, token_entropy])
def test_entropy_chunk_error_names_chunk(fn):
    """Bug class: the error for a bad ``chunk`` names another parameter."""
    with pytest.raises(ValueError, match=r"^chunk=0 is invalid"):
        fn(torch.zeros(1, 3, 4), 0)


@pytest.mark.parametrize("fn", [logits_entropy, token_entropy])
def test_entropy_follows_the_logits_device(fn):
    """Bug class: the output (or the NaN column of the first token) made on the default device, not the logits' (a
    CUDA run fails or returns CPU tensors); the meta device stands in for an accelerator."""
    out = fn(torch.zeros(2, 5, 7, device="meta"), 2)
    assert out.device.type == "meta" and tuple(out.shape) == (2, 5)
