"""metrics.py: the states add up across updates and across processes, stay exact, and the defaults are the spec's.

Processes are merged with torchmetrics' ``merge_state`` (what DDP's sync does with each state's ``dist_reduce_fx``);
the expected values are worked out by hand.
"""

import math

import pytest
import torch

from lightning_reasonattn.functional import RhythmTrace
from lightning_reasonattn.metrics import FutureAttentionInfluence, RhythmCoupling, WindowedAverageAttentionDistance

NAN = math.nan


def trace(waad, fai, response=None):
    waad, fai = torch.tensor([waad]), torch.tensor([fai])
    response = torch.isfinite(waad) if response is None else torch.tensor([response])
    empty = torch.zeros_like(response)
    heads = torch.zeros(1, 1, dtype=torch.long)
    return RhythmTrace(
        waad, fai, waad, empty, empty, empty, empty, torch.zeros(1, 1, 1), heads, heads, [0], response
    )  # fmt: skip


def coupled_trace():
    # WAAD peaks at 2 and 6, FAI peaks at 4 and 7 (top 20% of 7 response tokens: 2 each)
    return trace([NAN, 1.0, 9.0, 1.0, 1.0, 1.0, 8.0, 1.0], [NAN, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.8])


ENTROPY = [NAN, 1.0, 3.0, 1.0, 1.0, 1.0, 2.0, 1.0]  # 3 and 2 at the WAAD peaks; 10 over 7 tokens


def test_response_means_read_their_signal_from_the_trace():
    t = trace([NAN, 1.0, 2.0, 6.0], [NAN, 4.0, NAN, NAN], response=[False, True, True, True])
    waad, fai = WindowedAverageAttentionDistance(num_buckets=3), FutureAttentionInfluence()
    waad.update_from_trace(t)
    fai.update_from_trace(t)
    assert waad.compute()["mean"].item() == pytest.approx(3.0)
    assert waad.compute()["profile"].tolist() == [1.0, 2.0, 6.0]  # one response token per bucket
    assert fai.compute()["mean"].item() == 4.0


def test_response_mean_states_merge_as_sums():
    """Two processes' states merged give the mean over both batches (not the mean of their means)."""
    a, b = FutureAttentionInfluence(num_buckets=3), FutureAttentionInfluence(num_buckets=3)
    a.update(torch.tensor([[NAN, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]), torch.tensor([[False] + [True] * 6]))
    b.update(torch.tensor([[NAN, NAN, NAN, NAN, 10.0, 20.0, 30.0]]), torch.tensor([[False] * 4 + [True] * 3]))
    a.merge_state(b)
    out = a.compute()
    assert out["mean"].item() == pytest.approx((21 + 60) / 9)
    assert out["profile"].tolist() == pytest.approx([(1 + 2 + 10) / 3, (3 + 4 + 20) / 3, (5 + 6 + 30) / 3])


def test_response_mean_total_stays_exact_past_float32():
    m = WindowedAverageAttentionDistance()
    for value in (1e8, 1.0, -1e8):  # 1e8 + 1 is 1e8 in float32
        m.update(torch.tensor([[value]], dtype=torch.float64))
    assert m.compute()["mean"].item() == pytest.approx(1 / 3)


def test_rhythm_coupling_adds_up_updates_and_processes():
    single, a, b = (RhythmCoupling(coupling_window=2) for _ in range(3))
    doubled = [2 * e for e in ENTROPY]
    for metric, entropies in ((single, (ENTROPY, doubled)), (a, (ENTROPY,)), (b, (doubled,))):
        for e in entropies:
            metric.update(coupled_trace(), torch.tensor([e]))
    a.merge_state(b)
    for metric in (single, a):
        out = metric.compute()
        assert out["entropy_at_peaks"].item() == pytest.approx((3 + 2 + 6 + 4) / 4)
        assert out["entropy_mean"].item() == pytest.approx(30 / 14)
        assert out["waad_followed_rate"].item() == 1.0  # 4 hits of 4 WAAD peaks
        assert out["waad_followed_shuffled"].item() == pytest.approx(6 / 7)
        assert out["fai_preceded_shuffled"].item() == pytest.approx(5 / 7)


def test_rhythm_coupling_entropy_sums_stay_exact_past_float32():
    m = RhythmCoupling(coupling_window=2)
    for scale in (1e8, 1.0, -1e8):  # 2e8 + 2 is 2e8 in float32
        m.update(coupled_trace(), torch.tensor([[NAN, 0.0, scale, 0.0, 0.0, 0.0, scale, 0.0]]))
    assert m.compute()["entropy_at_peaks"].item() == pytest.approx(2 / 6)


def test_rhythm_coupling_defaults_are_k_3_and_top_0_2():
    # k: one WAAD peak (2); FAI peaks at 1 and 6 (its top 2 of 6 values that are local maxima); 6 is 4 tokens after 2
    t = trace([NAN, 1.0, 9.0, 1.0, 1.0, 1.0, 1.0], [NAN, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9])
    # windows [3, 6] or [2, 6] before 6
    for metric, rate in ((RhythmCoupling(), 0.0), (RhythmCoupling(coupling_window=4), 0.5)):
        metric.update(t)
        assert metric.compute()["fai_preceded_rate"].item() == rate
    # top: WAAD's local maxima 5, 4, 3 (at 1, 3, 5) of 10 values; the top 20% (2) are 5 and 4
    t = trace([NAN, 5.0, 1.0, 4.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0], [NAN] * 11)
    entropy = torch.tensor([[NAN, 1.0, 0.0, 2.0, 0.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    for metric, at_peaks in ((RhythmCoupling(), (1 + 2) / 2), (RhythmCoupling(peak_fraction=0.3), (1 + 2 + 6) / 3)):
        metric.update(t, entropy)
        assert metric.compute()["entropy_at_peaks"].item() == pytest.approx(at_peaks)


def test_profile_positions_come_from_the_response_mask():
    m = FutureAttentionInfluence(num_buckets=2)
    m.update(torch.tensor([[0.1, 0.3, NAN, NAN]]), torch.ones(1, 4, dtype=torch.bool))  # the last 2 have no FAI
    profile = m.compute()["profile"].tolist()
    assert profile[0] == pytest.approx(0.2) and math.isnan(profile[1])  # tokens 0, 1 of 4: the first half
    m = WindowedAverageAttentionDistance(num_buckets=3)
    m.update(torch.tensor([[1.0, 2.0]]))  # 2 tokens in 3 buckets: the last is empty
    profile = m.compute()["profile"].tolist()
    assert profile[:2] == [1.0, 2.0] and math.isnan(profile[2])
