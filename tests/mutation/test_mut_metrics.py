"""metrics.py: what the states hold, how they add up over many updates and past float32, and that the settings
and the trace's response mask reach the counts. Expected values are worked out by hand."""

import math

import pytest
import torch
from test_metrics_states import ENTROPY, coupled_trace, trace

from lightning_reasonattn.metrics import FutureAttentionInfluence, RhythmCoupling, WindowedAverageAttentionDistance
from lightning_reasonattn.settings import CouplingSettings

NAN = math.nan


def three_peaks_trace():
    # WAAD: local maxima 5, 4, 3 at 1, 3, 5 of 10 response tokens; the top 20% (2 values) are 5 and 4, the top 30%
    # adds 3. FAI: one local maximum, 0.9 at 6 (0.1 at 1 is not: its right neighbour is larger).
    return trace(
        [NAN, 5.0, 1.0, 4.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        [NAN, 0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 0.5, 0.4, 0.3, 0.2],
    )


# with a window of 1: peak_fraction 0.3 makes WAAD peaks {1, 3, 5}; only 5 has the FAI peak 6 within [t, t + 1], and
# the FAI peak 6 has the WAAD peak 5 within [5, 6]. With the defaults (window 3, fraction 0.2): WAAD peaks {1, 3}, and
# 3 has 6 within [3, 6]: 1 of 2.
WINDOW_1_TOP_30 = {"waad_followed_rate": 1 / 3, "fai_preceded_rate": 1.0}


def test_peak_fraction_reaches_the_coupling_counts():
    """Guards a setting dropped on the way to the counts (peak_fraction silently the default 0.2)."""
    m = RhythmCoupling(coupling_window=1, peak_fraction=0.3)
    m.update(three_peaks_trace())
    out = m.compute()
    for name, value in WINDOW_1_TOP_30.items():
        assert out[name].item() == pytest.approx(value)


def test_coupling_settings_object_is_used():
    """Guards ``RhythmCoupling(coupling=CouplingSettings(...))`` ignored in favour of the defaults."""
    m = RhythmCoupling(coupling=CouplingSettings(coupling_window=1, peak_fraction=0.3))
    assert (m.coupling_window, m.peak_fraction) == (1, 0.3)
    m.update(three_peaks_trace())
    out = m.compute()
    for name, value in WINDOW_1_TOP_30.items():
        assert out[name].item() == pytest.approx(value)


def test_coupling_states_are_the_pooled_counts():
    """Guards states that accumulate with the wrong sign: every output is a ratio of two states, which hides it,
    but the states themselves (torchmetrics' ``metric_state``, what DDP sums and ``merge_state`` adds to) are
    the counts of the batches seen."""
    m = RhythmCoupling(coupling_window=2)
    for _ in range(2):
        m.update(coupled_trace(), torch.tensor([ENTROPY]))
    state = {name: value.item() for name, value in m.metric_state.items()}
    # per batch: WAAD peaks at 2 and 6, FAI peaks at 4 and 7; entropy 3 + 2 at the WAAD peaks, 10 over 7 tokens
    assert state["waad_peaks"] == 4 and state["fai_peaks"] == 4
    assert state["waad_followed"] == 4  # 2 -> 4, 6 -> 7 within 2 tokens after
    assert state["entropy_waad_peak_sum"] == 10 and state["entropy_waad_peak_count"] == 4
    assert state["entropy_sum"] == 20 and state["entropy_count"] == 14


def test_profile_adds_up_over_updates():
    """Guards a bucket state overwritten by each update instead of added to (one update per metric hides it)."""
    m = FutureAttentionInfluence(num_buckets=2)
    m.update(torch.tensor([[1.0, 2.0]]))  # bucket 0: 1; bucket 1: 2
    m.update(torch.tensor([[3.0, 5.0, 7.0, 9.0]]))  # bucket 0: 3, 5; bucket 1: 7, 9
    out = m.compute()
    assert out["profile"].tolist() == pytest.approx([(1 + 3 + 5) / 3, (2 + 7 + 9) / 3])
    assert out["mean"].item() == pytest.approx(27 / 6)


def test_profile_sums_stay_exact_past_float32():
    """Guards bucket states kept in float32: 1e8 + 1 is 1e8 there, and the 1 is lost from the profile."""
    m = WindowedAverageAttentionDistance(num_buckets=2)
    for value in (1e8, 1.0, -1e8):  # one token per update: all in bucket 0
        m.update(torch.tensor([[value]], dtype=torch.float64))
    profile = m.compute()["profile"].tolist()
    assert profile[0] == pytest.approx(1 / 3) and math.isnan(profile[1])


def test_token_count_stays_exact_past_2_to_the_24():
    """Guards a token count kept in float32: past 2**24 tokens (16.7M, a long run's worth) adding 1 leaves it
    unchanged, so the tokens that come later stop counting and the mean drifts."""
    m = WindowedAverageAttentionDistance()
    block = torch.zeros(1, 2**20)
    for _ in range(16):  # 2**24 tokens of value 0
        m.update(block)
    for _ in range(64):  # then 64 tokens of value 1, one per update
        m.update(torch.ones(1, 1))
    assert m.compute()["mean"].item() == pytest.approx(64 / (2**24 + 64), rel=1e-6)  # float32 count: 64 / 2**24


def test_update_from_trace_takes_positions_from_the_response_mask():
    """Guards ``update_from_trace`` dropping the trace's response mask: the profile's relative positions would
    come from where FAI is finite, and a response whose last tokens have an empty horizon would be squeezed into
    fewer tokens (its tokens 0 and 1 of 4 are the first half, not the whole response)."""
    t = trace([NAN, 1.0, 1.0, 1.0, 1.0], [NAN, 0.1, 0.3, NAN, NAN], response=[False, True, True, True, True])
    m = FutureAttentionInfluence(num_buckets=2)
    m.update_from_trace(t)
    profile = m.compute()["profile"].tolist()
    assert profile[0] == pytest.approx(0.2) and math.isnan(profile[1])


def test_response_mask_moves_to_the_values_device():
    """Guards a response mask used where it lies: on a GPU run a CPU mask with GPU values would make ``update``
    raise. A metric and values on ``meta`` with a CPU mask show it on a CPU."""
    m = FutureAttentionInfluence(num_buckets=2).to("meta")
    m.update(torch.ones(1, 3, device="meta"), torch.ones(1, 3, dtype=torch.bool))
    assert {value.device.type for value in m.metric_state.values()} == {"meta"}
