"""functional/tokens.py: survivors of the mutation run (issue 26), against hand-worked values and the spec.

References are plain Python: sorted lists, ``math.ceil``, the spec's definitions (docs/rhythm.md, "Token selection").
"""

import math

import pytest
import torch

from lightning_reasonattn.functional.tokens import (
    dominated_anchors,
    intro_tokens,
    lower_median,
    preplan_tokens,
    top_count,
    top_fraction,
    waad_jumps,
)

NAN = float("nan")


@pytest.mark.parametrize(("n", "q", "expected"), [(10, 0.7, 7), (10, 0.71, 8), (10, 0.25, 3), (3, 0.5, 2), (1, 1.0, 1)])
def test_top_count_is_ceil_of_q_n_for_ints_and_tensors(n, q, expected):
    """Bug class: the count of selected tokens off by one (rounded instead of ceil'd, n / q, a lost rounding), for a
    plain int as for a tensor. 0.7 * 10 is 7.000000000000001 in floats: still 7."""
    assert top_count(n, q) == expected
    assert top_count(torch.tensor([n, 2 * n]), q).tolist() == [expected, top_count(2 * n, q)]


def test_preplan_tokens_use_the_given_q():
    """Bug class: ``q`` dropped on the way to top_fraction (the default 0.4 used instead of the caller's)."""
    jumps = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5, NAN]])  # 6 finite jumps
    got = preplan_tokens(jumps, q=0.2)  # ceil(0.2 * 6) = 2; the default 0.4 would take 3
    assert got.tolist() == [[True, True, False, False, False, False, False]]


@pytest.mark.parametrize(
    "row",
    [[3.0, 1.0, 2.0], [2.0, 1.0], [NAN, 4.0, NAN], [5.0, NAN, 1.0, 4.0, 3.0, 2.0, float("inf")], [7.0]],
)
def test_lower_median_against_sorted_list(row):
    """Bug class: the wrong middle index (odd counts, the upper middle of an even count) or a row with one finite
    value read as empty. Reference: the ``(n - 1) // 2``-th of the sorted finite values."""
    finite = sorted(v for v in row if math.isfinite(v))
    assert lower_median(torch.tensor([row])).item() == finite[(len(finite) - 1) // 2]


def test_lower_median_of_a_row_without_finite_values_is_nan():
    """Bug class: an empty row gets a number (0 or inf) instead of NaN."""
    assert math.isnan(lower_median(torch.tensor([[NAN, float("inf")]])).item())


def test_top_fraction_breaks_ties_by_earlier_position_on_long_rows():
    """Bug class: an unstable sort (CPU's unstable sort reorders ties on long rows), so which of equal tokens is
    selected depends on the sort's internals. Spec: ties go to the earlier position."""
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 3, (2, 5000), generator=g).float()
    got = top_fraction(values, 0.3)
    for b in range(2):
        row = values[b].tolist()
        keep = set(sorted(range(len(row)), key=lambda i: (-row[i], i))[: math.ceil(0.3 * len(row))])
        assert got[b].tolist() == [i in keep for i in range(len(row))]


def test_intro_token_at_position_zero_is_found():
    """Bug class: the look-back window padded with 0 instead of NaN before position 0, so a jump of 0 at position 0
    ties with the padding and the intro token lands before the sequence (dropped). Spec: argmax over
    ``u in [t - k, t - 1]`` of existing positions; here only ``u = 0``."""
    jumps = torch.tensor([[0.0, NAN, NAN]])
    dominated = torch.tensor([[False, True, False]])
    assert intro_tokens(jumps, dominated, look_back=3).tolist() == [[True, False, False]]


def test_anchor_at_position_zero_is_never_dominated():
    """Bug class: padding read as a jump of 0: with a median jump of 0 (a flat WAAD), an anchor at position 0 (no
    token before it, so no jump in its window) would count as dominated."""
    waad = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    jumps = waad_jumps(waad)  # 0, 0, 0, NaN: tau_delta = 0
    anchors = torch.tensor([[True, False, False, False]])
    assert dominated_anchors(waad, jumps, anchors, look_back=2).tolist() == [[False] * 4]


def test_top_fraction_follows_the_values_device():
    """Bug class: a helper tensor made on the default device (CPU) while the values live elsewhere (a CUDA run
    fails); the meta device stands in for an accelerator."""
    assert top_fraction(torch.zeros(2, 5, device="meta"), 0.5).device.type == "meta"
