"""Coupling math and the torchmetrics classes, against hand-worked numbers."""

import math

import pytest
import torch

from lightning_reasonattn.functional import RhythmTrace
from lightning_reasonattn.functional.coupling import coupling_counts, local_peaks, token_entropy, within
from lightning_reasonattn.metrics import FutureAttentionInfluence, RhythmCoupling, WindowedAverageAttentionDistance

NAN = float("nan")


def test_local_peaks_by_hand():
    v = torch.tensor([NAN, 1.0, 5.0, 2.0, 4.0, 4.0, 3.0, 9.0, NAN, 0.0])
    # local maxima: 5 (pos 2), 4 (pos 4, first of the plateau), 9 (pos 7, NaN to its right counts as lower),
    # 0 (pos 9: a NaN on the left, the end on the right)
    assert local_peaks(v, 1.0).nonzero().flatten().tolist() == [2, 4, 7, 9]
    # top 20% of 9 finite values = ceil(1.8) = 2 largest: 9 and 5
    assert local_peaks(v, 0.2).nonzero().flatten().tolist() == [2, 7]


def test_followed_by_by_hand():
    targets = torch.tensor([False, False, False, True, False, False, False])
    assert within(targets, 0, "ahead").tolist() == [False, False, False, True, False, False, False]
    assert within(targets, 2, "ahead").tolist() == [False, True, True, True, False, False, False]
    with pytest.raises(ValueError, match="coupling_window=-1"):
        within(targets, -1, "ahead")


def test_coupling_counts_by_hand():
    resp = torch.tensor([[False, True, True, True, True, True, True, True]])
    waad = torch.tensor([[NAN, 1.0, 9.0, 1.0, 1.0, 1.0, 8.0, 1.0]])  # peaks at 2 and 6 (top 20% of 7 = 2)
    fai = torch.tensor([[NAN, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.8]])  # peaks at 4 and 7
    c = coupling_counts(waad, fai, resp, coupling_window=2, peak_fraction=0.2)
    # WAAD peak 2 -> FAI peak 4 within [2, 4]: hit; peak 6 -> 7: hit
    assert (c["waad_followed"].item(), c["waad_peaks"].item()) == (2.0, 2.0)
    # response positions 1..7 followed within 2 tokens: 2, 3, 4 (by 4) and 5, 6, 7 (by 7) -> 6 of 7;
    # 2 WAAD peaks shuffled over 7 positions hit 2 * 6 / 7 times on average
    assert c["waad_followed_shuffled"].item() == pytest.approx(12 / 7)
    # FAI peak 4 <- WAAD peak 2 within [2, 4]: hit; FAI peak 7 <- 6 within [5, 7]: hit
    assert (c["fai_preceded"].item(), c["fai_peaks"].item()) == (2.0, 2.0)
    # positions with a WAAD peak in [t - 2, t]: 2, 3, 4 and 6, 7 -> 5 of 7
    assert c["fai_preceded_shuffled"].item() == pytest.approx(10 / 7)
    assert c["positions"].item() == 7.0


def test_token_entropy_aligned_and_chunked():
    torch.manual_seed(0)
    logits = torch.randn(2, 9, 5)
    p = logits.softmax(-1)
    expected = -(p * p.log()).sum(-1)
    h = token_entropy(logits, chunk=3)
    assert torch.isnan(h[:, 0]).all()
    torch.testing.assert_close(h[:, 1:], expected[:, :-1])
    uniform = token_entropy(torch.zeros(1, 2, 7))
    assert uniform[0, 1].item() == pytest.approx(math.log(7))


def test_response_mean_ignores_nan_and_pools_batches():
    m = WindowedAverageAttentionDistance()
    m.update(torch.tensor([[NAN, 1.0, 2.0]]))
    m.update(torch.tensor([[3.0, NAN, NAN], [NAN, NAN, NAN]]))
    assert m.compute()["mean"].item() == pytest.approx(2.0)  # (1 + 2 + 3) / 3, not the mean of batch means
    m.reset()
    with pytest.warns(UserWarning, match="called before the ``update`` method"):  # torchmetrics' own warning
        assert math.isnan(m.compute()["mean"].item())


def test_profile_buckets_by_relative_position():
    m = FutureAttentionInfluence(num_buckets=3)
    resp = torch.tensor([[False, True, True, True, True, True, True], [False, False, False, False, True, True, True]])
    vals = torch.tensor([[NAN, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [NAN, NAN, NAN, NAN, 10.0, 20.0, 30.0]])
    m.update(vals, resp)
    out = m.compute()
    # first row: 6 tokens, two per bucket; second row: 3 tokens, one per bucket
    assert out["profile"].tolist() == pytest.approx([(1 + 2 + 10) / 3, (3 + 4 + 20) / 3, (5 + 6 + 30) / 3])
    assert out["mean"].item() == pytest.approx((21 + 60) / 9)
    with pytest.raises(ValueError, match="num_buckets=0"):
        FutureAttentionInfluence(num_buckets=0)


def fixed_trace():
    resp = torch.tensor([[False, True, True, True, True, True, True, True]])
    waad = torch.tensor([[NAN, 1.0, 9.0, 1.0, 1.0, 1.0, 8.0, 1.0]])
    fai = torch.tensor([[NAN, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.8]])
    empty = torch.zeros_like(resp)
    return RhythmTrace(
        waad,
        fai,
        waad,
        empty,
        empty,
        empty,
        empty,
        torch.zeros(1, 1, 1),
        torch.zeros(1, 1),
        torch.zeros(1, 1),
        [0],
        resp,
    )


def test_rhythm_coupling_rates_and_entropy_lift():
    m = RhythmCoupling(coupling_window=2, peak_fraction=0.2)
    entropy = torch.tensor([[NAN, 1.0, 3.0, 1.0, 1.0, 1.0, 2.0, 1.0]])
    m.update(fixed_trace(), entropy)
    out = m.compute()
    assert out["waad_followed_rate"].item() == pytest.approx(1.0)
    assert out["waad_followed_shuffled"].item() == pytest.approx(6 / 7)
    assert out["waad_followed_lift"].item() == pytest.approx(7 / 6)
    assert out["fai_preceded_rate"].item() == pytest.approx(1.0)
    assert out["fai_preceded_shuffled"].item() == pytest.approx(5 / 7)
    assert out["fai_preceded_lift"].item() == pytest.approx(7 / 5)
    assert out["entropy_at_peaks"].item() == pytest.approx(2.5)  # peaks at 2 and 6
    assert out["entropy_mean"].item() == pytest.approx(10 / 7)
    assert out["entropy_lift"].item() == pytest.approx(2.5 / (10 / 7))
    assert not any(name.startswith("coupling_") for name in out)  # each value under one name
