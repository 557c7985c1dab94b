"""The survey's statistics: windows, shuffled baselines, planted rhythms, bootstrap intervals and profiles."""

import pytest
import torch

from lightning_reasonattn.functional import select_tokens
from lightning_reasonattn.functional.bootstrap import bootstrap_ci, profile_sums, resample_counts
from lightning_reasonattn.functional.coupling import (
    response_counts,
    shuffled_hits,
    within,
)

NAN = float("nan")


def test_windows_both_directions_by_hand():
    targets = torch.tensor([False, False, False, True, False, False, False])
    assert within(targets, 0, "back").tolist() == targets.tolist()
    assert within(targets, 2, "back").tolist() == [False, False, False, True, True, True, False]
    assert within(targets, 2, "ahead").tolist() == [False, True, True, True, False, False, False]
    with pytest.raises(ValueError, match="look='sideways'"):
        within(targets, 1, "sideways")
    with pytest.raises(ValueError, match="coupling_window=-1"):
        within(targets, -1, "back")


def test_shuffled_hits_is_the_mean_over_actual_shuffles():
    """The closed form against many real permutations of the source positions (an independent reference)."""
    gen = torch.Generator().manual_seed(3)
    n = 30
    candidates = torch.rand(2, n, generator=gen) < 0.8
    targets = torch.rand(2, n, generator=gen) < 0.15
    sources = candidates & (torch.rand(2, n, generator=gen) < 0.25)
    got = shuffled_hits(sources, targets, candidates, coupling_window=2, look="back")
    near = within(targets, 2, "back")
    for row in range(2):
        slots = candidates[row].nonzero().flatten()
        m = int(sources[row].sum())
        total = 0.0
        for _ in range(4000):
            chosen = slots[torch.randperm(len(slots), generator=gen)[:m]]
            total += float(near[row, chosen].sum())
        assert got["shuffled"][row].item() == pytest.approx(total / 4000, rel=0.03)
        assert got["hits"][row].item() == float((near[row] & sources[row]).sum())
        assert got["events"][row].item() == m


def _signals(b: int, n: int, planted: bool, seed: int):
    """Noise signals over a response of ``n`` tokens after a 4-token prompt; with ``planted``, a WAAD spike every
    10 tokens, each followed one token later by an FAI spike (and the entropy is high at the WAAD spikes)."""
    gen = torch.Generator().manual_seed(seed)
    waad = torch.rand(b, n + 4, generator=gen)
    fai = torch.rand(b, n + 4, generator=gen)
    entropy = torch.rand(b, n + 4, generator=gen)
    response = torch.zeros(b, n + 4, dtype=torch.bool)
    response[:, 4:] = True
    if planted:
        for row in range(b):
            spots = 4 + torch.arange(0, n - 14, 10) + torch.randint(0, 4, (1,), generator=gen)
            waad[row, spots] += 5.0
            fai[row, spots + 1] += 5.0
            entropy[row, spots] += 2.0
    fai[:, -10:] = NAN  # the FAI horizon is empty at the end of a response
    waad[~response], fai[~response], entropy[~response] = NAN, NAN, NAN
    return waad, fai, entropy, response


def _lift(counts, direction, peaks):
    return float(counts[direction].sum() / counts[f"{direction}_shuffled"].sum()), float(counts[peaks].sum())


@pytest.mark.parametrize("direction,peaks", [("fai_preceded", "fai_peaks"), ("waad_followed", "waad_peaks")])
def test_planted_rhythm_lifts_and_noise_does_not(direction, peaks):
    waad, fai, entropy, response = _signals(64, 120, planted=True, seed=0)
    # top 12 of 120: the spikes
    planted = response_counts(waad, fai, response, entropy, coupling_window=3, peak_fraction=0.1)
    lift, n_peaks = _lift(planted, direction, peaks)
    # every spike pairs up (rate ~1), while ~4 of every 10 positions are near a spike (shuffled rate ~0.4)
    assert n_peaks > 600 and lift > 2.0
    ratio = (planted["entropy_waad_peak_sum"].sum() / planted["entropy_waad_peak_count"].sum()) / (
        planted["entropy_sum"].sum() / planted["entropy_count"].sum()
    )
    assert ratio > 1.5  # the entropy was raised at the WAAD spikes

    waad, fai, entropy, response = _signals(64, 120, planted=False, seed=1)
    noise = response_counts(waad, fai, response, entropy, coupling_window=3, peak_fraction=0.1)
    lift, n_peaks = _lift(noise, direction, peaks)
    assert n_peaks > 400 and 0.85 < lift < 1.15


def test_response_counts_token_sets_by_hand():
    resp = torch.tensor([[False, True, True, True, True, True, True, True]])
    waad = torch.tensor([[NAN, 1.0, 9.0, 1.0, 1.0, 1.0, 8.0, 1.0]])
    fai = torch.tensor([[NAN, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, NAN]])
    sets = select_tokens(waad, fai)
    c = response_counts(waad, fai, resp, None, coupling_window=1)
    # jumps |W[t] - W[t+1]| at 1..6: 8, 8, 0, 0, 7, 7 -> top ceil(0.4 * 6) = 3: positions 1, 2, 5
    assert sets["preplan"][0].nonzero().flatten().tolist() == [1, 2, 5]
    # FAI finite at 1..6 -> top 3: 4, then the ties 0.1 at 1 and 2 (earlier first)
    assert sets["anchor"][0].nonzero().flatten().tolist() == [1, 2, 4]
    # anchors with a preplan token in [t - 1, t]: 1 (itself), 2 (1 and 2); 4 has 3, 4: no
    assert (c["anchor_preceded"].item(), c["anchors"].item()) == (2.0, 3.0)
    # shuffled over the 6 positions with a finite FAI: preceded positions 1, 2, 3, 5, 6 -> 3 * 5 / 6
    assert c["anchor_preceded_shuffled"].item() == pytest.approx(2.5)
    # preplan tokens with an anchor in [t, t + 1]: 1, 2 (yes), 5 (5, 6: no)
    assert (c["preplan_followed"].item(), c["preplans"].item()) == (2.0, 3.0)
    assert torch.isnan(c["entropy_sum"] / c["entropy_count"]).all()  # no entropy given
    assert c["waad_sum"].item() == pytest.approx(22.0) and c["fai_count"].item() == 6.0


def test_bootstrap_point_is_a_ratio_of_sums():
    values = torch.tensor([[1.0, 1.0], [1.0, 9.0]])  # per-response rates 1 and 1/9
    point, low, high = bootstrap_ci(values, lambda s: s[..., 0] / s[..., 1], n_boot=200, seed=0)
    assert point.item() == pytest.approx(2 / 10)  # not the mean of rates (5/9)
    assert 1 / 9 <= low.item() <= point.item() <= high.item() <= 1.0
    again = bootstrap_ci(values, lambda s: s[..., 0] / s[..., 1], n_boot=200, seed=0)
    assert again[1].item() == low.item() and again[2].item() == high.item()  # seeded


def test_resample_counts_draw_n_each():
    counts = resample_counts(7, 50, torch.Generator().manual_seed(0))
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all()
    assert counts.mean().item() == pytest.approx(1.0, abs=0.15)


def test_bootstrap_interval_covers_the_true_ratio_about_95_percent():
    """Synthetic surveys with a known true rate 0.3: the 95% interval should cover it in roughly 95% of them."""
    gen = torch.Generator().manual_seed(11)
    covered, widths = 0, []
    reps = 200
    for rep in range(reps):
        peaks = torch.randint(2, 20, (80,), generator=gen).double()
        hits = torch.binomial(peaks, torch.full_like(peaks, 0.3), generator=gen)
        _, low, high = bootstrap_ci(torch.stack([hits, peaks], 1), lambda s: s[..., 0] / s[..., 1], 400, seed=rep)
        covered += int(low.item() <= 0.3 <= high.item())
        widths.append(high.item() - low.item())
    assert 0.89 <= covered / reps <= 0.99
    # binomial standard error of the pooled rate ~ sqrt(0.3 * 0.7 / 880) = 0.0154 -> width ~ 4 * 0.0154
    assert sum(widths) / reps == pytest.approx(4 * 0.0154, rel=0.2)


def test_bootstrap_vector_statistic_and_errors():
    values = torch.tensor([[1.0, 2.0, 2.0, 2.0], [3.0, 2.0, 4.0, 2.0]])
    point, low, high = bootstrap_ci(values, lambda s: s[..., :2] / s[..., 2:], n_boot=50)
    assert point.tolist() == pytest.approx([4 / 6, 4 / 4]) and low.shape == (2,)
    with pytest.raises(ValueError, match="one row per response"):
        bootstrap_ci(torch.zeros(0, 2), lambda s: s[..., 0])
    with pytest.raises(ValueError, match="n_boot=0"):
        bootstrap_ci(values, lambda s: s[..., 0], n_boot=0)


def test_profile_sums_by_relative_position():
    resp = torch.tensor([[False, True, True, True, True], [True, True, False, False, False]])
    vals = torch.tensor([[NAN, 1.0, 2.0, NAN, 4.0], [5.0, 6.0, NAN, NAN, NAN]])
    sums, counts = profile_sums(vals, resp, 2)
    # row 0: 4 tokens -> buckets 0, 0, 1, 1 (position 3 is NaN); row 1: 2 tokens -> 0, 1
    assert sums.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    assert counts.tolist() == [[2.0, 1.0], [1.0, 1.0]]
