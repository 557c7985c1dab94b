"""functional/attention.py: WAAD, FAI and the head split against plain-Python references (issue 26).

The references follow docs/rhythm.md and the docstrings term by term in Python floats; none calls the code under test.
"""

import re
import warnings

import pytest
import torch

from lightning_reasonattn.functional import attention
from lightning_reasonattn.functional.attention import (
    fai,
    fai_counts,
    head_backward_distance,
    horizon_band,
    select_layers,
    split_heads,
    waad,
)


def random_causal(n: int, *lead: int, seed: int = 0) -> torch.Tensor:
    """Row-stochastic causal maps ``[*lead, n, n]`` in float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(*lead, n, n, generator=g, dtype=torch.float64).tril()
    return a / a.sum(-1, keepdim=True)


def ref_waad(a: list[list[float]], resp: list[bool], window: int) -> list[float]:
    """``WAAD[t] = sum_{s <= t} A[t, s] * min(t - s, W)`` on the response, NaN elsewhere."""
    n = len(resp)
    return [sum(a[t][s] * min(t - s, window) for s in range(t + 1)) if resp[t] else float("nan") for t in range(n)]


def ref_fai(a: list[list[float]], resp: list[bool], lo: int, hi: int) -> list[float]:
    """``FAI[s] = mean_{t in R, s + lo <= t <= s + hi} A[t, s]`` on the response; NaN where that set is empty."""
    n = len(resp)
    out = []
    for s in range(n):
        rows = [t for t in range(s + lo, min(n - 1, s + hi) + 1) if resp[t]]
        out.append(sum(a[t][s] for t in rows) / len(rows) if resp[s] and rows else float("nan"))
    return out


def ref_distance(a: list[list[float]], resp: list[bool]) -> float:
    """``d = mean_{t in R} sum_{s <= t} A[t, s] * (t - s)``."""
    rows = [sum(a[t][s] * (t - s) for s in range(t + 1)) for t in range(len(resp)) if resp[t]]
    return sum(rows) / len(rows)


def assert_close_nan(got: torch.Tensor, expected: list[float], tol: float) -> None:
    torch.testing.assert_close(
        got.double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=0, equal_nan=True
    )


RESP = [False, False, True, True, True, True, True, False, True, True, True, True]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_maps_are_reduced_in_float32(dtype):
    """Bug class: reductions run in the map's half precision (bfloat16 keeps 8 bits: a sum of 12 products is off by
    percents) and come back in it, against the module's promise of float32 (float64 kept)."""
    n = len(RESP)
    a = random_causal(n, 2, seed=1).to(dtype)  # [heads, N, N], the values the code sees
    exact = a.double().tolist()
    resp = torch.tensor(RESP)
    got_w = waad(a, resp, window=4)
    got_f = fai(a, resp, horizon=(1, 5))
    got_d = head_backward_distance(a, resp)
    assert got_w.dtype == got_f.dtype == got_d.dtype == torch.float32
    for h in range(2):
        assert_close_nan(got_w[h], ref_waad(exact[h], RESP, 4), 1e-5)
        assert_close_nan(got_f[h], ref_fai(exact[h], RESP, 1, 5), 1e-6)
        assert abs(got_d[h].item() - ref_distance(exact[h], RESP)) < 1e-5
    assert waad(a.double(), resp).dtype == torch.float64


def test_waad_sums_only_at_and_before_the_query():
    """Bug class: mass above the diagonal counted with a negative distance. WAAD sums over ``s <= t`` only (the
    offsets are clamped to [0, W]), so a map that is not causal (a prefix-LM, a bidirectional layer) reads the same as
    its causal part."""
    n = len(RESP)
    g = torch.Generator().manual_seed(2)
    full = torch.rand(n, n, generator=g, dtype=torch.float64)
    full = full / full.sum(-1, keepdim=True)  # row-stochastic, mass on both sides of the diagonal
    got = waad(full, torch.tensor(RESP), window=3)
    assert_close_nan(got, ref_waad(full.tolist(), RESP, 3), 1e-12)


def test_horizon_band_without_a_device_is_the_band_on_the_cpu():
    """Bug class: the default device spelled wrongly (the band fails to build when no device is given)."""
    band = horizon_band(5, (1, 2))
    expected = [[1 <= t - s <= 2 for s in range(5)] for t in range(5)]
    assert band.device.type == "cpu"
    assert band.tolist() == expected


def test_select_layers_takes_the_most_negative_index():
    """Bug class: an off-by-one at ``-L``: the docstring's range ``[-L, L)`` includes ``-L`` (the first layer)."""
    assert select_layers(4, -4) == [0]
    assert select_layers(4, [-4, -1, 3]) == [0, 3]
    assert select_layers(4, (-1,)) == [3]
    with pytest.raises(ValueError, match=r"^layer index -5 is out of range for a model with 4 layers"):
        select_layers(4, -5)


@pytest.mark.parametrize("bad", [3.5, None, True, object()], ids=["3.5", "None", "True", "object"])
def test_select_layers_names_a_bad_single_index(bad):
    """Bug class: a non-iterable, non-integer selection refused as if it were an empty list (an error that no longer
    names the value passed)."""
    with pytest.raises(ValueError, match=rf"^layer index {re.escape(repr(bad))} is out of range"):
        select_layers(12, bad)


def test_split_heads_breaks_ties_by_the_lower_flat_index():
    """Bug class: an unstable sort. With more than 16 heads in the pool torch's default sort reorders ties, so which
    head is local (or global) would depend on the sort's internals, not on the documented rule (ties keep the lower
    flat index ``l * H + h`` first)."""
    g = torch.Generator().manual_seed(3)
    distances = torch.randint(0, 3, (2, 2, 20), generator=g).double()  # [B, L_sel, H]: 40 heads, three values
    local, global_ = split_heads(distances, fraction=0.25)
    k = 10  # round(0.25 * 40)
    for b in range(2):
        flat = distances[b].flatten().tolist()
        order = sorted(range(40), key=lambda i: (flat[i], i))
        assert local[b].tolist() == order[:k]
        assert global_[b].tolist() == order[-k:]


@pytest.mark.parametrize("longest", [1, 2, 3, 5, 9, 10, 11, 37])
def test_short_response_warning_suggests_a_horizon_that_works(longest, monkeypatch):
    """Bug class: the warning for responses shorter than the horizon suggests a horizon that is itself refused (not a
    pair of integers, lo > hi) or leaves FAI undefined again."""
    monkeypatch.setattr(attention, "_WARNED_SHORT_RESPONSES", False)
    n = longest + 3
    mask = torch.zeros(2, n, dtype=torch.bool)
    mask[0, 3:] = True  # the longest response
    mask[1, n - 1] = True
    with pytest.warns(UserWarning, match=rf"the longest response has {longest} tokens") as record:
        fai_counts(mask, (longest, longest + 5))
    suggested = re.search(r"e\.g\. horizon=\((\d+), (\d+)\)", str(record[0].message))
    lo, hi = int(suggested[1]), int(suggested[2])
    assert 0 <= lo <= hi and lo < longest  # a response of `longest` tokens has a token at s + lo
    monkeypatch.setattr(attention, "_WARNED_SHORT_RESPONSES", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts = fai_counts(mask, (lo, hi))
    assert bool(((counts > 0) & mask).any())


def test_every_tensor_is_built_on_the_maps_device(monkeypatch):
    """Bug class: an offset matrix or a horizon band built on the default device (the CPU) instead of the map's: on
    a GPU the product with the map raises. The meta device stands in for the GPU (a CPU tensor mixed with a meta one
    raises the same way) and needs no accelerator; no value is computed, only shapes and devices."""
    monkeypatch.setattr(attention, "_WARNED_SHORT_RESPONSES", True)  # the warning's check reads values: skipped
    meta = torch.device("meta")
    a = torch.empty(2, 3, 6, 6, device=meta)
    mask = torch.ones(2, 6, dtype=torch.bool, device=meta)
    assert waad(a, mask).device == meta
    assert fai(a, mask, (1, 2)).device == meta
    assert head_backward_distance(a, mask).device == meta
    assert fai_counts(mask, (1, 2)).device == meta
    assert horizon_band(6, (1, 2), meta).device == meta


@pytest.mark.parametrize(
    ("attn_shape", "mask_shape"),
    [
        ((2, 1, 6), (2, 6)),  # one query row: a decoding step's map (with a KV cache)
        ((2, 3, 1, 6), (2, 6)),  # the same with heads
        ((2, 6, 1), (2, 6)),  # one key column
        ((2, 6, 6), (2, 1)),  # a mask of one token
        ((2, 6, 6), (2, 5)),  # a mask of another length
        ((6,), (6,)),  # not a map
    ],
)
def test_maps_that_are_not_square_over_the_masks_tokens_are_refused(attn_shape, mask_shape):
    """Bug class: bad shapes accepted. A ``[B, 1, N]`` map (one query row) broadcast against the ``[N, N]`` offsets
    gave a ``[B, N]`` WAAD of the right shape, every row a copy of the one row; a one-token mask broadcast over every
    token. Each function now names both shapes."""
    attn = torch.full(attn_shape, 0.25)
    mask = torch.ones(mask_shape, dtype=torch.bool)
    match = re.escape(f"attn has shape {attn_shape} and response_mask {mask_shape}: expected [*batch, *heads, N, N]")
    for call in (lambda: waad(attn, mask), lambda: fai(attn, mask, (1, 2)), lambda: head_backward_distance(attn, mask)):
        with pytest.raises(ValueError, match=match):
            call()


def test_one_map_without_batch_dimensions():
    """Bug class: the shape check refusing the smallest valid input, one ``[N, N]`` map with an ``[N]`` mask."""
    a = random_causal(5, seed=4)
    resp = [False, True, True, True, True]
    assert_close_nan(waad(a, torch.tensor(resp), window=2), ref_waad(a.tolist(), resp, 2), 1e-12)
    assert_close_nan(fai(a, torch.tensor(resp), (1, 2)), ref_fai(a.tolist(), resp, 1, 2), 1e-12)
    assert abs(head_backward_distance(a, torch.tensor(resp)).item() - ref_distance(a.tolist(), resp)) < 1e-12
