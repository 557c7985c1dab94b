"""The functional math against a 6-token map worked out by hand (numbers in the comments).

Map ``A`` (rows sum to 1, causal), prompt = positions 0-1, response R = positions 2-5:

    row 0: 1
    row 1: .5 .5
    row 2: .2 .3 .5
    row 3: .1 .1 .4 .4
    row 4: .6  0  0 .2 .2
    row 5: .3 .1 .1 .1 .2 .2
"""

import contextlib
import math

import pytest
import torch

from lightning_reasonattn.functional import (
    anchor_tokens,
    credit_gamma,
    dominated_anchors,
    fai,
    fai_counts,
    head_backward_distance,
    intro_tokens,
    lower_median,
    preplan_tokens,
    rhythm_from_attentions,
    select_layers,
    split_heads,
    top_fraction,
    waad,
    waad_jumps,
)
from lightning_reasonattn.functional import attention as attention_math

NAN = float("nan")
ROWS = [
    [1.0],
    [0.5, 0.5],
    [0.2, 0.3, 0.5],
    [0.1, 0.1, 0.4, 0.4],
    [0.6, 0.0, 0.0, 0.2, 0.2],
    [0.3, 0.1, 0.1, 0.1, 0.2, 0.2],
]


def hand_map() -> torch.Tensor:
    a = torch.zeros(6, 6, dtype=torch.float64)
    for t, row in enumerate(ROWS):
        a[t, : len(row)] = torch.tensor(row, dtype=torch.float64)
    return a


def response(start: int = 2, n: int = 6) -> torch.Tensor:
    r = torch.zeros(n, dtype=torch.bool)
    r[start:] = True
    return r


def assert_close_nan(actual, expected):
    expected = torch.tensor(expected, dtype=torch.float64)
    actual = actual.double()
    assert torch.equal(actual.isnan(), expected.isnan()), (actual, expected)
    torch.testing.assert_close(actual.nan_to_num(), expected.nan_to_num(), atol=1e-12, rtol=0)


def test_waad_by_hand():
    # W = 2: t=2: .2*2 + .3*1 = .7; t=3: .1*2 + .1*2 + .4 = .8; t=4: .6*2 + .2 = 1.4;
    # t=5: (.3+.1+.1+.1)*2 + .2 = 1.4
    assert_close_nan(waad(hand_map(), response(), window=2), [NAN, NAN, 0.7, 0.8, 1.4, 1.4])


def test_waad_window_one_is_one_minus_self_attention():
    # min(t - s, 1) = 1 for every s < t, so WAAD = 1 - A[t, t].
    assert_close_nan(waad(hand_map(), response(), window=1), [NAN, NAN, 0.5, 0.6, 0.8, 0.8])


def test_head_distance_by_hand():
    # Row distances .7, .9, 2.6, 2.6 -> mean 1.7
    d = head_backward_distance(hand_map(), response())
    assert d.item() == pytest.approx(1.7, abs=1e-12)


def test_fai_by_hand_with_empty_horizon():
    # horizon (1, 2): s=2 <- rows {3,4}: (.4 + 0)/2; s=3 <- {4,5}: (.2 + .1)/2; s=4 <- {5}: .2; s=5: empty
    assert_close_nan(fai(hand_map(), response(), horizon=(1, 2)), [NAN, NAN, 0.2, 0.15, 0.2, NAN])
    assert_close_nan(fai_counts(response(), (1, 2)).double(), [1, 2, 2, 2, 1, 0])


def test_fai_rows_outside_response_do_not_count():
    # s=2 with horizon (0, 3): rows 2..5 all in R -> (.5 + .4 + 0 + .1) / 4; prompt rows never count
    f = fai(hand_map(), response(), horizon=(0, 3))
    assert f[2].item() == pytest.approx(0.25)
    assert torch.isnan(f[:2]).all()


def test_jumps_and_preplan_by_hand():
    jumps = waad_jumps(waad(hand_map(), response(), window=2))
    assert_close_nan(jumps, [NAN, NAN, 0.1, 0.6, 0.0, NAN])
    # finite jumps .1, .6, 0 -> ceil(.4 * 3) = 2 largest: positions 3 and 2
    assert preplan_tokens(jumps, 0.4).tolist() == [False, False, True, True, False, False]


def test_top_fraction_ties_prefer_the_earlier_position():
    f = fai(hand_map(), response(), horizon=(1, 2))  # .2, .15, .2 at 2, 3, 4
    assert anchor_tokens(f, 0.4).tolist() == [False, False, True, False, True, False]  # ceil(1.2) = 2
    assert top_fraction(f, 0.3).tolist() == [False, False, True, False, False, False]  # tie .2/.2 -> earlier


def test_top_fraction_count_ignores_float_noise():
    values = torch.arange(10.0)
    assert int(top_fraction(values, 0.7).sum()) == 7  # 0.7 * 10 = 7.000000000000001 in floats
    assert top_fraction(values, 0.7)[3:].all()


def test_top_fraction_never_picks_non_finite():
    v = torch.tensor([float("inf"), 1.0, NAN, -float("inf"), 0.5])
    assert top_fraction(v, 1.0).tolist() == [False, True, False, False, True]


def test_lower_median_matches_torch_median():
    v = torch.tensor([[3.0, NAN, 1.0, 4.0, 2.0], [NAN, NAN, NAN, NAN, NAN]])
    assert lower_median(v)[0].item() == torch.median(torch.tensor([3.0, 1.0, 4.0, 2.0])).item() == 2.0
    assert math.isnan(lower_median(v)[1].item())


def test_dominated_anchor_and_intro_by_hand():
    w = waad(hand_map(), response(), window=2)  # .7 .8 1.4 1.4, lower median .8
    jumps = waad_jumps(w)  # .1 .6 0, lower median .1
    anchors = anchor_tokens(fai(hand_map(), response(), horizon=(1, 2)), 0.7)  # ceil(2.1) = 3: 2, 3, 4
    assert anchors.tolist() == [False, False, True, True, True, False]
    # t=2: window has no finite jump; t=3: WAAD .8 <= .8 and max jump .1 >= .1; t=4: WAAD 1.4 > .8
    dom = dominated_anchors(w, jumps, anchors, look_back=3)
    assert dom.tolist() == [False, False, False, True, False, False]
    # intro(3) = argmax of delta over [0, 2] within R = position 2
    assert intro_tokens(jumps, dom, look_back=3).tolist() == [False, False, True, False, False, False]


def test_intro_prefers_the_earliest_maximum():
    jumps = torch.tensor([NAN, 0.5, 0.5, 0.1, NAN])
    dom = torch.tensor([False, False, False, False, True])
    assert intro_tokens(jumps, dom, look_back=3).tolist() == [False, True, False, False, False]


def hand_trace(q=0.7):
    attn = hand_map()[None, None, None]  # [B=1, L=1, H=1, N, N]
    return rhythm_from_attentions(attn, response()[None], window=2, horizon=(1, 2), head_fraction=1.0, q=q)


def test_credit_strategies_by_hand():
    t = hand_trace(q=0.7)  # anchors {2,3,4}, D = {3}, I = {2}, preplan ceil(2.1)=3: {2,3,4}
    assert credit_gamma(t, "uniform").tolist() == [[1.0] * 6]
    # coupled: t=2 anchor (+.5) and intro (+.25); t=3 dominated (+.25); t=4 anchor (+.5)
    assert credit_gamma(t, "coupled").tolist() == [[1.0, 1.0, 1.75, 1.25, 1.5, 1.0]]
    assert credit_gamma(t, "coupled", alpha=1.0).tolist() == [[1.0, 1.0, 2.0, 1.0, 1.5, 1.0]]
    assert credit_gamma(t, "global_anchor").tolist() == [[1.0, 1.0, 1.5, 1.5, 1.5, 1.0]]
    # q re-selects from the signals: anchors {2,4}, preplan {2,3}
    assert credit_gamma(t, "global_anchor", q=0.4).tolist() == [[1.0, 1.0, 1.5, 1.0, 1.5, 1.0]]
    assert credit_gamma(t, "local_chunk", q=0.4).tolist() == [[1.0, 1.0, 1.5, 1.5, 1.0, 1.0]]
    g = credit_gamma(t, "coupled", normalize=True)[0]
    assert g[2:].mean().item() == pytest.approx(1.0)
    assert g[2].item() == pytest.approx(1.75 / 1.375)
    assert g[:2].tolist() == [1.0, 1.0]


def test_credit_random_and_entropy():
    t = hand_trace(q=0.5)  # response of 4 tokens -> ceil(.5 * 4) = 2 amplified
    g1 = credit_gamma(t, "random", generator=torch.Generator().manual_seed(3))
    g2 = credit_gamma(t, "random", generator=torch.Generator().manual_seed(3))
    assert torch.equal(g1, g2)
    assert (g1[0, :2] == 1).all() and int((g1[0] == 1.5).sum()) == 2
    ent = torch.tensor([[9.0, 9.0, 0.1, 0.3, 0.2, 0.4]])  # prompt entropies must be ignored
    assert credit_gamma(t, "entropy", entropy=ent).tolist() == [[1.0, 1.0, 1.0, 1.5, 1.0, 1.5]]
    with pytest.raises(ValueError, match="entropy"):
        credit_gamma(t, "entropy")
    with pytest.raises(ValueError, match="strategy='bogus'"):
        credit_gamma(t, "bogus")
    with pytest.raises(ValueError, match="gamma_amp"):
        credit_gamma(t, "coupled", gamma_amp=0)


@pytest.mark.parametrize("length", [0, 1])
def test_short_responses(length, monkeypatch):
    monkeypatch.setattr(attention_math, "_WARNED_SHORT_RESPONSES", False)  # once per process: as a fresh one
    r = response(start=6 - length)
    w = waad(hand_map(), r, window=2)
    # a 1-token response is shorter than the horizon: FAI is undefined, and it says so (no response: nothing to say)
    with pytest.warns(UserWarning, match=r"horizon=\(1, 2\) is longer") if length else contextlib.nullcontext():
        f = fai(hand_map(), r, horizon=(1, 2))
    jumps = waad_jumps(w)
    assert torch.isnan(jumps).all() and torch.isnan(f).all()
    assert int(torch.isfinite(w).sum()) == length
    assert not preplan_tokens(jumps).any() and not anchor_tokens(f).any()
    assert math.isnan(head_backward_distance(hand_map(), r).item()) == (length == 0)
    t = rhythm_from_attentions(hand_map()[None, None, None], r[None], window=2, horizon=(1, 2), head_fraction=1.0)
    assert not (t.dominated | t.intro).any()
    assert credit_gamma(t, "coupled").tolist() == [[1.0] * 6]


def test_split_heads_by_hand():
    d = torch.tensor([[3.0, 1.0, 2.0, 1.0, 5.0]])
    local, glob = split_heads(d, 0.4)  # k = 2; ascending stable order 1, 3, 2, 0, 4
    assert local.tolist() == [[1, 3]] and glob.tolist() == [[0, 4]]
    local, glob = split_heads(d, 0.1)  # round(.5) = 0 -> at least one head
    assert local.tolist() == [[1]] and glob.tolist() == [[4]]
    local, glob = split_heads(d.reshape(1, 1, 5), 0.3)  # round(1.5) = 2, half to even
    assert local.tolist() == [[1, 3]]


def test_group_means_equal_waad_of_mean_map():
    # Linearity: WAAD/FAI of the mean map equal the mean of per-head values (used by the capture).
    torch.manual_seed(0)
    s = torch.randn(2, 3, 12, 12, dtype=torch.float64).masked_fill(torch.ones(12, 12).triu(1).bool(), -torch.inf)
    a = s.softmax(-1)
    r = torch.zeros(2, 12, dtype=torch.bool)
    r[:, 4:] = True
    torch.testing.assert_close(waad(a.mean(1), r, 3), waad(a, r, 3).mean(1), equal_nan=True)
    torch.testing.assert_close(fai(a.mean(1), r, (1, 4)), fai(a, r, (1, 4)).mean(1), equal_nan=True)


def test_select_layers():
    assert select_layers(30) == [10, 12, 15, 18, 20]  # round(linspace(10, 20, 5)), 12.5 -> 12, 17.5 -> 18
    assert select_layers(6) == [2, 3, 4]  # duplicates dropped
    assert select_layers(1) == [0]
    assert select_layers(4, "all") == [0, 1, 2, 3]
    assert select_layers(4, [-1, 0]) == [0, 3]
    with pytest.raises(ValueError, match="layer index 4 is out of range"):
        select_layers(4, [4])
    with pytest.raises(ValueError, match="'middle', 'all'"):
        select_layers(4, "center")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: waad(hand_map(), response(), window=0), "window=0"),
        (lambda: fai(hand_map(), response(), horizon=(5, 2)), r"horizon=\(5, 2\)"),
        (lambda: fai(hand_map(), response(), horizon=(-1, 2)), r"horizon=\(-1, 2\)"),
        (lambda: top_fraction(torch.ones(3), 0.0), "q=0.0"),
        (lambda: top_fraction(torch.ones(3), 1.5), "q=1.5"),
        (lambda: split_heads(torch.ones(1, 3), 0), "head_fraction=0"),
        (lambda: rhythm_from_attentions(hand_map()[None, None, None], response()[None, :4]), "response_mask"),
        (
            lambda: dominated_anchors(torch.ones(3), torch.ones(3), torch.ones(3, dtype=torch.bool), look_back=0),
            "look_back=0",
        ),
    ],
)
def test_bad_input_names_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()
