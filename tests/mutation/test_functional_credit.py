"""functional/credit.py: normalisation per response, the ranges of gamma_amp and alpha, which q and k are used."""

import math

import pytest
import torch

from lightning_reasonattn.functional import RhythmTrace, credit_gamma, select_tokens

NAN = math.nan


def response(lengths, width):
    return torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]


def signal_trace(q=0.4, k=3):
    """One response of 12 tokens (after 2 prompt tokens) whose sets depend on q and k."""
    torch.manual_seed(4)
    mask = torch.zeros(1, 14, dtype=torch.bool)
    mask[:, 2:] = True
    waad = torch.where(mask, torch.rand(1, 14) * 10, NAN)
    fai = torch.where(mask, torch.rand(1, 14), NAN)
    fai[:, -2:] = NAN  # the last tokens' horizon is empty
    sets = select_tokens(waad, fai, q, k)
    heads = torch.zeros(1, 1, dtype=torch.long)
    return RhythmTrace(
        waad, fai, sets["waad_jumps"], sets["preplan"], sets["anchor"], sets["dominated"], sets["intro"],
        torch.zeros(1, 1, 2), heads, heads + 1, [0], mask, q=q, look_back=k,
    )  # fmt: skip


def test_normalize_makes_each_response_s_mean_1():
    mask = response([4, 2, 3], 5)
    entropy = torch.tensor([[9.0, 1, 1, 1, 1], [9.0, 1, 1, 1, 1], [1.0, 9, 1, 1, 1]])
    gamma = credit_gamma(None, "entropy", response_mask=mask, q=0.25, entropy=entropy, normalize=True)
    # row 0: one of 4 amplified (ceil(1)): gammas 1.5, 1, 1, 1 -> mean 1.125; row 1: ceil(0.5) = 1 of 2: mean 1.25
    # row 2: one of 3: mean 3.5 / 3; outside the response gamma stays 1
    m0, m1, m2 = 1.125, 1.25, 3.5 / 3
    expected = torch.tensor(
        [[1.5 / m0, 1 / m0, 1 / m0, 1 / m0, 1], [1.5 / m1, 1 / m1, 1, 1, 1], [1 / m2, 1.5 / m2, 1 / m2, 1, 1]]
    )
    torch.testing.assert_close(gamma, expected)


def test_normalize_a_one_token_response_and_an_empty_row():
    # a response of one token, amplified: 1.5 / mean 1.5 = 1 exactly; a row with no response token keeps gamma 1
    # (its count is clamped to 1 to avoid 0 / 0, not to more: a clamp at 2 would halve a one-token response's mean)
    mask = response([1, 0], 3)
    entropy = torch.tensor([[5.0, 1, 1], [5.0, 1, 1]])
    gamma = credit_gamma(None, "entropy", response_mask=mask, q=0.5, entropy=entropy, normalize=True)
    assert gamma.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]


def test_gamma_amp_below_1_damps_and_alpha_takes_its_whole_range():
    mask = response([2], 2)
    entropy = torch.tensor([[1.0, 0.0]])
    assert credit_gamma(None, "entropy", response_mask=mask, q=0.5, entropy=entropy, gamma_amp=0.5).tolist() == [
        [0.5, 1.0]
    ]
    trace = signal_trace()
    for alpha in (0.0, 1.0):
        credit_gamma(trace, "coupled", alpha=alpha)  # both ends are allowed
    for alpha in (-0.1, 1.5, 2.0):
        with pytest.raises(ValueError, match=f"alpha={alpha!r} is invalid"):
            credit_gamma(trace, "coupled", alpha=alpha)


def test_attention_strategies_need_a_trace_and_the_others_a_mask():
    for strategy in ("local_chunk", "global_anchor", "coupled"):
        with pytest.raises(ValueError, match="needs a RhythmTrace"):
            credit_gamma(None, strategy, response_mask=response([2], 2))
    with pytest.raises(ValueError, match="needs a RhythmTrace .* or a response_mask"):
        credit_gamma(None, "uniform")


def test_random_and_entropy_use_the_trace_s_q_unless_given_one():
    trace = signal_trace(q=0.25)  # 12 response tokens: ceil(3) amplified
    scores = torch.rand(1, 14)
    for strategy, kwargs in (("random", {"scores": scores}), ("entropy", {"entropy": scores})):
        assert (credit_gamma(trace, strategy, **kwargs) > 1).sum().item() == 3
        assert (credit_gamma(trace, strategy, q=0.5, **kwargs) > 1).sum().item() == 6
    mask = response([10], 10)
    assert (credit_gamma(None, "random", response_mask=mask, scores=torch.rand(1, 10)) > 1).sum().item() == 4  # 0.4


def test_a_new_q_reselects_the_tokens_with_the_trace_s_k():
    trace = signal_trace(q=0.4, k=1)
    sets = select_tokens(trace.waad, trace.fai, 0.6, 1)
    anchor, dom, intro = sets["anchor"], sets["dominated"], sets["intro"]
    expected = 1 + 0.5 * ((anchor & ~dom).float() + 0.5 * dom.float() + 0.5 * intro.float())
    assert dom.any() and not torch.equal(dom, select_tokens(trace.waad, trace.fai, 0.6, 3)["dominated"])
    torch.testing.assert_close(credit_gamma(trace, "coupled", q=0.6), expected)
