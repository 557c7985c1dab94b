"""functional/bootstrap.py: survivors of the mutation run (issue 26)."""

import pytest
import torch

from lightning_reasonattn.functional.bootstrap import bootstrap_ci, profile_sums


def test_bootstrap_level_error_names_level():
    """Bug class: the error for a bad ``level`` names another parameter (or none)."""
    with pytest.raises(ValueError, match=r"^level=1\.5 is invalid"):
        bootstrap_ci(torch.ones(3, 2), lambda s: s[..., 0] / s[..., 1], level=1.5)


def test_bootstrap_interval_does_not_depend_on_chunk():
    """Bug class: the memory setting ``chunk`` changes the resamples (a run's interval would move with it). The
    resamples are drawn in the same order whatever the chunk, so the intervals agree exactly."""
    values = torch.rand(9, 2, generator=torch.Generator().manual_seed(0)) + 0.1
    statistic = lambda s: s[..., 0] / s[..., 1]  # noqa: E731
    runs = [bootstrap_ci(values, statistic, n_boot=300, seed=4, chunk=c) for c in (1, 7, 256, 300)]
    for run in runs[1:]:
        assert [t.tolist() for t in run] == [t.tolist() for t in runs[0]]


def test_profile_sums_live_on_the_values_device():
    """Bug class: the mask or the sums left on the default device (CPU) while the values are elsewhere: a CUDA run
    with a CPU mask fails. The meta device stands in for an accelerator; the mask stays on the CPU."""
    sums, counts = profile_sums(torch.zeros(2, 5, device="meta"), torch.ones(2, 5, dtype=torch.bool), 3)
    assert sums.device.type == counts.device.type == "meta" and tuple(sums.shape) == (2, 3)
