"""functional/coupling.py on batches: each response counted as if alone (padding and other rows change nothing), the
knobs reaching every count, and the batch sums."""

import math

import pytest
import torch

from lightning_reasonattn.functional import select_tokens
from lightning_reasonattn.functional.coupling import coupling_counts, entropy_counts, local_peaks, response_counts

KNOBS = dict(coupling_window=2, peak_fraction=0.3, q=0.5, look_back=1)  # none of them the default
WINDOW, FRACTION = KNOBS["coupling_window"], KNOBS["peak_fraction"]


def rows(seed=0):
    """Three responses of 9, 12 and 6 tokens: ``(waad, fai, entropy)`` per row, unpadded, NaN-free."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in (9, 12, 6):
        waad, fai, entropy = torch.rand(n, generator=g) * 10, torch.rand(n, generator=g), torch.rand(n, generator=g)
        fai[-2:] = math.nan  # an empty horizon at the end
        out.append((waad, fai, entropy))
    return out


def padded_batch(responses, width=16, prompt=(2, 0, 3)):
    """The responses in one batch, after ``prompt[i]`` prompt tokens, padded to ``width``; every value outside the
    responses is finite garbage (a stale value a caller might leave there)."""
    b = len(responses)
    waad, fai, entropy = (torch.full((b, width), 7.5) for _ in range(3))
    mask = torch.zeros(b, width, dtype=torch.bool)
    for i, ((w, f, e), p) in enumerate(zip(responses, prompt, strict=True)):
        n = len(w)
        waad[i, p : p + n], fai[i, p : p + n], entropy[i, p : p + n] = w, f, e
        mask[i, p : p + n] = True
    return waad, fai, entropy, mask


def alone(w, f, e):
    one = torch.ones(1, len(w), dtype=torch.bool)
    return w[None], f[None], e[None], one


def test_each_response_is_counted_as_if_alone():
    responses = rows()
    waad, fai, entropy, mask = padded_batch(responses)
    nan_outside = lambda x: x.masked_fill(~mask, math.nan)  # noqa: E731 (coupling_counts reads NaN as "no value")
    batch = response_counts(waad, fai, mask, entropy, **KNOBS)
    pairs = coupling_counts(nan_outside(waad), nan_outside(fai), mask, WINDOW, FRACTION, per_response=True)
    for i, response in enumerate(responses):
        w, f, e, one = alone(*response)
        single = response_counts(w, f, one, e, **KNOBS)
        assert set(batch) == set(single)
        for name in batch:
            assert batch[name].shape == (3,) and batch[name][i].item() == pytest.approx(single[name].item()), name
        single_pairs = coupling_counts(w, f, one, WINDOW, FRACTION, per_response=True)
        for name in pairs:
            assert pairs[name][i].item() == pytest.approx(single_pairs[name].item()), name


def test_coupling_counts_sum_over_the_batch_by_default():
    waad, fai, _, mask = padded_batch(rows())
    waad, fai = waad.masked_fill(~mask, math.nan), fai.masked_fill(~mask, math.nan)
    per_row = coupling_counts(waad, fai, mask, per_response=True)
    total = coupling_counts(waad, fai, mask)
    for name, value in total.items():
        assert value.shape == () and value.item() == pytest.approx(per_row[name].sum().item()), name
    assert total["positions"].item() == 9 + 12 + 6


def test_response_counts_use_every_knob():
    """The counts equal their building blocks called with the same knobs (each block is tested by hand)."""
    responses = rows(1)
    waad, fai, entropy, mask = padded_batch(responses)
    out = response_counts(waad, fai, mask, entropy, **KNOBS)
    w, f = waad.masked_fill(~mask, math.nan), fai.masked_fill(~mask, math.nan)
    sets = select_tokens(w, f, KNOBS["q"], KNOBS["look_back"])
    pairs = coupling_counts(w, f, mask, WINDOW, FRACTION, per_response=True)
    at_waad = entropy_counts(entropy, mask, local_peaks(w, FRACTION))
    at_jump = entropy_counts(entropy, mask, local_peaks(sets["waad_jumps"], FRACTION))
    expected = {
        **pairs,
        "anchors": sets["anchor"].sum(-1),
        "preplans": sets["preplan"].sum(-1),
        "dominated": sets["dominated"].sum(-1),
        "entropy_sum": at_waad["sum_all"],
        "entropy_count": at_waad["count_all"],
        "entropy_waad_peak_sum": at_waad["sum_at"],
        "entropy_waad_peak_count": at_waad["count_at"],
        "entropy_jump_peak_sum": at_jump["sum_at"],
        "entropy_jump_peak_count": at_jump["count_at"],
        "waad_sum": w.nansum(-1),
        "waad_count": torch.isfinite(w).sum(-1),
        "fai_sum": f.nansum(-1),
        "fai_count": torch.isfinite(f).sum(-1),
    }
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value.double(), msg=name)
    assert sets["dominated"].any() and not torch.equal(sets["dominated"], select_tokens(w, f, 0.5, 3)["dominated"])


def test_response_counts_without_entropy_count_none():
    waad, fai, _, mask = padded_batch(rows())
    out = response_counts(waad, fai, mask)
    for name in ("entropy_sum", "entropy_count", "entropy_waad_peak_count", "entropy_jump_peak_sum"):
        assert out[name].tolist() == [0.0, 0.0, 0.0], name


def test_entropy_counts_per_row_by_hand():
    entropy = torch.tensor([[1.0, 2.0, math.nan, 4.0], [8.0, 16.0, 32.0, 64.0]])
    mask = torch.tensor([[True, True, True, False], [False, True, True, True]])
    at = torch.tensor([[False, True, True, True], [True, True, False, False]])
    out = entropy_counts(entropy, mask, at)
    assert out["sum_at"].tolist() == [2.0, 16.0]  # the NaN and the tokens outside the response do not count
    assert out["count_at"].tolist() == [1.0, 1.0]
    assert out["sum_all"].tolist() == [3.0, 112.0]
    assert out["count_all"].tolist() == [2.0, 3.0]
    assert out["sum_all"].dtype == torch.float64


def test_within_by_hand_at_both_ends():
    from lightning_reasonattn.functional.coupling import within

    targets = torch.tensor([True, False, False, False, True])
    assert within(targets, 1).tolist() == [True, False, False, True, True]  # "ahead" is the default
    assert within(targets, 1, "back").tolist() == [True, True, False, False, True]
    assert within(targets, 10, "back").tolist() == [True] * 5
    assert within(targets, 0, "back").tolist() == targets.tolist()
    for k in (True, 1.5, -1):
        with pytest.raises(ValueError, match=f"coupling_window={k!r} is invalid"):
            within(targets, k)


def test_shuffled_hits_by_hand_on_any_batch_shape():
    from lightning_reasonattn.functional.coupling import shuffled_hits

    # one candidate (position 1), a source there and a target right after it: 1 hit, and 1 expected when shuffled
    sources = torch.tensor([[False, True, False, False]])
    targets = torch.tensor([[False, False, True, False]])
    candidates = torch.tensor([[False, True, False, False]])
    out = shuffled_hits(sources, targets, candidates, 1, "ahead")
    assert (out["events"].item(), out["hits"].item(), out["shuffled"].item()) == (1.0, 1.0, 1.0)
    # [2, 3, N]: the counts are per row of the last dimension
    g = torch.Generator().manual_seed(0)
    s, t, c = (torch.rand(2, 3, 8, generator=g) > 0.5 for _ in range(3))
    batched = shuffled_hits(s, t, c, 2, "back")
    for i in range(2):
        for j in range(3):
            one = shuffled_hits(s[i, j], t[i, j], c[i, j], 2, "back")
            for name, value in one.items():
                assert batched[name].shape == (2, 3) and batched[name][i, j].item() == pytest.approx(value.item())


def test_a_flat_signal_peaks_at_its_start():
    """A plateau's first token is its peak, at the start of the sequence too (nothing before it counts as lower)."""
    assert local_peaks(torch.zeros(3), 1.0).tolist() == [True, False, False]
    assert local_peaks(torch.tensor([0.0, 1.0, 1.0]), 1.0).tolist() == [False, True, False]
