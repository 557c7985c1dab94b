"""functional/bootstrap.py against the percentile bootstrap written out in one draw, with its documented defaults."""

import pytest
import torch

from lightning_reasonattn.functional.bootstrap import bootstrap_ci


def rate(sums):
    return sums[..., 0] / sums[..., 1]


def reference(values, n_boot=2000, level=0.95, seed=0):
    """All resamples in one ``randint`` from ``Generator().manual_seed(seed)``; the statistic of each resample's column
    sums; the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles."""
    r = values.shape[0]
    draws = torch.randint(r, (n_boot, r), generator=torch.Generator().manual_seed(seed))
    stats = torch.stack([rate(values.double()[draw].sum(0)) for draw in draws])
    quantiles = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.nanquantile(stats, quantiles)
    return rate(values.double().sum(0)), low, high


VALUES = torch.tensor([[3.0, 10.0], [1.0, 4.0], [6.0, 7.0], [0.0, 5.0], [2.0, 2.0]])  # hits, peaks per response


@pytest.mark.parametrize(("n_boot", "level", "seed", "chunk"), [(23, 0.8, 5, 7), (23, 0.5, 1, 256), (1, 0.9, 0, 4)])
def test_bootstrap_matches_the_one_draw_reference(n_boot, level, seed, chunk):
    got = bootstrap_ci(VALUES, rate, n_boot=n_boot, level=level, seed=seed, chunk=chunk)
    for value, expected in zip(got, reference(VALUES, n_boot, level, seed), strict=True):
        assert value.item() == pytest.approx(expected.item(), rel=1e-12)


def test_bootstrap_defaults_are_2000_resamples_95_percent_seed_0():
    got = bootstrap_ci(VALUES, rate)
    for value, expected in zip(got, reference(VALUES), strict=True):
        assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.equal(torch.stack(bootstrap_ci(VALUES, rate)), torch.stack(got))  # the same seed, the same interval


def test_one_response_has_a_point_interval():
    assert [v.item() for v in bootstrap_ci(torch.tensor([[3.0, 4.0]]), rate, n_boot=5)] == [0.75, 0.75, 0.75]
