"""functional/knockout.py: survivors of the mutation run (issue 26), against hand-worked groups."""

import pytest
import torch

from lightning_reasonattn.functional.knockout import choose_groups, token_kind


@pytest.mark.parametrize(
    ("text", "kind"), [("0", "digit"), ("9", "digit"), (" 10", "digit"), (":", "punctuation"), ("A", "word")]
)
def test_token_kind_digit_bounds(text, kind):
    """Bug class: the digit range off by one at either end ('0' or '9' not digits) or too wide (':' or 'A')."""
    assert token_kind(text) == kind


def _groups(fai, entropy, count=2):
    n = len(fai)
    return choose_groups(
        torch.tensor(fai),
        torch.arange(n, dtype=torch.float32),
        torch.tensor(entropy),
        ["word"] * n,
        count,
        peak_fraction=0.5,
        generator=torch.Generator().manual_seed(0),
    )[0]


def test_anchors_are_peaks_before_higher_non_peaks():
    """Bug class: anchors ranked by FAI alone, so a non-peak shoulder of a peak beats a lower peak. FAI 1 5 6 2 4 0 0 0
    with peak_fraction 0.5: the top 4 are 6, 5, 4, 2; local maxima among them: positions 2 (6) and 4 (4). Position 1
    (5) is higher than 4 but not a peak."""
    groups = _groups([1.0, 5.0, 6.0, 2.0, 4.0, 0.0, 0.0, 0.0], [0.0] * 8)
    assert groups["anchors"] == [2, 4]


def test_entropy_group_puts_nan_last():
    """Bug class: a NaN entropy (the first token has none) ranked first instead of last, so the entropy control
    knocks out a token with no entropy. The two highest finite entropies are at positions 2 and 3."""
    nan = float("nan")
    groups = _groups([1.0] * 8, [nan, 1.0, 3.0, 2.0, 0.5, 0.1, 0.2, 0.3])
    assert groups["entropy"] == [2, 3]
