"""functional/credit.py: survivors of the mutation run (issue 26): error messages, devices of the random strategy."""

import math

import pytest
import torch

from lightning_reasonattn.functional.credit import credit_gamma

MASK = torch.tensor([[False, True, True, True, True, True], [True, True, True, False, False, False]])


def test_q_error_names_q():
    """Bug class: the error for a bad ``q`` names another parameter (or none)."""
    with pytest.raises(ValueError, match=r"^q=2\.0 is invalid"):
        credit_gamma(None, "uniform", response_mask=MASK, q=2.0)


def test_entropy_shape_error_says_what_was_given():
    """Bug class: the error for a mis-shaped ``entropy`` says "got None" (or fails with a TypeError) instead of naming
    the shape the caller passed."""
    with pytest.raises(ValueError, match=r"got \(2, 4\)\.$"):
        credit_gamma(None, "entropy", response_mask=MASK, entropy=torch.zeros(2, 4))


def reference_random_gamma(scores: torch.Tensor, q: float, amp: float) -> list[list[float]]:
    """``1 + (amp - 1) [t in top ceil(q n) scores of the response]``, 1 outside it, in plain Python."""
    out = []
    for row, keep in zip(scores.tolist(), MASK.tolist(), strict=True):
        resp = [i for i, m in enumerate(keep) if m]
        top = set(sorted(resp, key=lambda i: (-row[i], i))[: math.ceil(q * len(resp))])
        out.append([amp if i in top else 1.0 for i in range(len(row))])
    return out


def test_random_draws_on_the_cpu_under_another_default_device():
    """Bug class: the random scores drawn on the default device: under ``torch.set_default_device("cuda")`` a CPU
    generator then fails (the meta device stands in). The draws are those of the seeded CPU generator."""
    scores = torch.rand(MASK.shape, generator=torch.Generator().manual_seed(3))
    with torch.device("meta"):
        got = credit_gamma(None, "random", response_mask=MASK, q=0.5, generator=torch.Generator().manual_seed(3))
    assert got.tolist() == reference_random_gamma(scores, 0.5, 1.5)


@pytest.mark.parametrize("strategy", ["uniform", "random"])
def test_gamma_follows_the_mask_device(strategy):
    """Bug class: the bonus (or the caller's CPU scores) left on the CPU while the mask is elsewhere: a CUDA run fails.
    The meta device stands in for an accelerator."""
    mask = MASK.to("meta")
    got = credit_gamma(None, strategy, response_mask=mask, scores=torch.rand(MASK.shape))
    assert got.device.type == "meta" and tuple(got.shape) == tuple(MASK.shape)
