"""The statistics of benchmarks/compare_credit.py against printed tables and hand-worked numbers."""

import doctest
import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cc():
    spec = importlib.util.spec_from_file_location("compare_credit", ROOT / "benchmarks" / "compare_credit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("p", "df", "table"),  # Student's t table
    [(0.975, 1, 12.706), (0.975, 3, 3.182), (0.975, 7, 2.365), (0.95, 10, 1.812), (0.975, 30, 2.042)],
)
def test_t_quantile_matches_the_table(cc, p, df, table):
    assert cc.t_quantile(p, df) == pytest.approx(table, abs=2e-3)


def test_paired_interval_by_hand(cc):
    diffs = [0.0, 0.1, -0.05, 0.15]  # mean 0.05, sd 0.0913, t(0.975, 3) = 3.182
    mean, low, high = cc.paired_interval(diffs)
    half = 3.1824 * math.sqrt(((0.05**2) + (0.05**2) + (0.1**2) + (0.1**2)) / 3) / 2
    assert mean == pytest.approx(0.05)
    assert (low, high) == pytest.approx((0.05 - half, 0.05 + half), abs=1e-3)
    assert math.isnan(cc.paired_interval([0.2])[1])  # one pair: no interval


def test_seeds_needed_and_sample_size(cc):
    # ((1.96 + 0.8416) * 0.2 / 0.105)^2 = 28.5 -> 29 pairs
    assert cc.seeds_needed(0.2, 0.105) == 29
    assert cc.seeds_needed(0.0, 0.105) == 2
    lines = cc.sample_size_lines(0.1, 0.5, 48, 0.105)
    # held-out sampling sd sqrt(2 * 0.25 / 48) = 0.102 >= the observed 0.1: the training spread is 0
    assert "training spread >= 0.000" in lines[0] and "<= 0.102" in lines[0]
    seeds = [int(line.split(":")[1].split()[0]) for line in lines[1:]]
    assert seeds == sorted(seeds, reverse=True)  # more held-out problems never need more seeds


def test_its_doctests_pass(cc):
    assert doctest.testmod(cc).failed == 0
