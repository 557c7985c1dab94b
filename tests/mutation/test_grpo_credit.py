"""grpo/credit.py: the gamma of a step's rollouts, by hand, and the keyed draws of the ``random`` strategy."""

import math

import pytest
import torch
from conftest import tiny_model

from lightning_reasonattn.functional import RhythmTrace
from lightning_reasonattn.functional.keyed import keyed_uniform, mix
from lightning_reasonattn.grpo.credit import CREDIT_STREAM, SAMPLE_STREAM, check_credit_layers, keyed_scores, rows_gamma
from lightning_reasonattn.grpo.settings import CreditSettings
from lightning_reasonattn.grpo.step_data import Rollouts


def rollouts(lengths, prompt_width=3, width=4, step=7, prompt_index=None, sample_index=None):
    """Rows of ``prompt_width`` prompt columns then ``width`` completion columns; row ``i``'s completion holds
    ``lengths[i]`` tokens (the response), then padding."""
    b, n = len(lengths), prompt_width + width
    completion = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    response = torch.cat([torch.zeros(b, prompt_width, dtype=torch.bool), completion], 1)
    return Rollouts(
        ids=torch.zeros(b, n, dtype=torch.long),
        attention_mask=torch.ones(b, n, dtype=torch.long),
        response_mask=response,
        completion_mask=completion,
        truncated=torch.zeros(b, dtype=torch.bool),
        prompts=["p"] * b,
        columns={},
        texts=[""] * b,
        seconds=0.0,
        stream_step=step,
        prompt_index=torch.tensor(prompt_index if prompt_index is not None else [0] * b),
        sample_index=torch.tensor(sample_index if sample_index is not None else list(range(b))),
    )


def hand_trace(response, marks):
    """A trace whose token sets are ``marks`` (``{"anchor": [(row, col), ...], ...}``); the numbers are NaN."""
    b, n = response.shape
    sets = {}
    for name in ("preplan", "anchor", "dominated", "intro"):
        s = torch.zeros(b, n, dtype=torch.bool)
        for row, col in marks.get(name, []):
            s[row, col] = True
        sets[name] = s
    nan = torch.full((b, n), math.nan)
    heads = torch.zeros(b, 1, dtype=torch.long)
    return RhythmTrace(
        waad=nan, fai=nan, waad_jumps=nan, **sets, head_distance=torch.zeros(b, 1, 2), local_heads=heads,
        global_heads=heads + 1, layers=[0], response_mask=response,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------ rows_gamma


def test_rhythm_strategies_by_hand():
    r = rollouts([4, 4])
    marks = {"anchor": [(0, 4), (0, 6)], "dominated": [(0, 6)], "intro": [(0, 5)], "preplan": [(1, 3), (1, 5)]}
    trace = hand_trace(r.response_mask, marks)
    entropy = torch.zeros(2, 4)
    gamma = {s: rows_gamma(CreditSettings(strategy=s), r, slice(0, 2), trace, entropy).tolist() for s in
             ("coupled", "global_anchor", "local_chunk", "uniform")}  # fmt: skip
    # coupled, g = 1.5, alpha = 0.5: anchor 1 + 0.5, introductory 1 + 0.5 * 0.5, dominated anchor 1 + 0.5 * 0.5
    assert gamma["coupled"] == [[1.0, 1.5, 1.25, 1.25], [1.0, 1.0, 1.0, 1.0]]
    assert gamma["global_anchor"] == [[1.0, 1.5, 1.0, 1.5], [1.0, 1.0, 1.0, 1.0]]
    assert gamma["local_chunk"] == [[1.0, 1.0, 1.0, 1.0], [1.5, 1.0, 1.5, 1.0]]
    assert gamma["uniform"] == [[1.0] * 4] * 2


def test_the_settings_numbers_reach_the_gamma():
    r = rollouts([4])
    trace = hand_trace(r.response_mask, {"anchor": [(0, 4), (0, 6)], "dominated": [(0, 6)], "intro": [(0, 5)]})
    settings = CreditSettings(strategy="coupled", gamma_amp=3.0, alpha=0.25)
    # bonus 2: anchor 1 + 2, introductory 1 + 0.25 * 2, dominated anchor 1 + 0.75 * 2
    assert rows_gamma(settings, r, slice(0, 1), trace, torch.zeros(1, 4)).tolist() == [[1.0, 3.0, 1.5, 2.5]]
    normalized = CreditSettings(strategy="coupled", gamma_amp=3.0, alpha=0.25, normalize=True)
    mean = (1.0 + 3.0 + 1.5 + 2.5) / 4
    got = rows_gamma(normalized, r, slice(0, 1), trace, torch.zeros(1, 4))
    torch.testing.assert_close(got, torch.tensor([[1.0, 3.0, 1.5, 2.5]]) / mean)


def test_entropy_strategy_takes_the_top_q_of_the_response_entropies():
    r = rollouts([4, 3], prompt_index=[0, 0])
    entropy = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.8, 0.2, 0.3, 9.0]])  # row 1's last column is padding
    got = rows_gamma(CreditSettings(strategy="entropy"), r, slice(0, 2), None, entropy)
    # q = 0.4: ceil(1.6) = 2 of 4 tokens (0.9, 0.7); ceil(1.2) = 2 of 3 (0.8, 0.3); padding keeps gamma 1
    assert got.tolist() == [[1.0, 1.5, 1.0, 1.5], [1.5, 1.0, 1.5, 1.0]]
    got = rows_gamma(CreditSettings(strategy="entropy", q=0.2, gamma_amp=2.0), r, slice(0, 2), None, entropy)
    assert got.tolist() == [[1.0, 2.0, 1.0, 1.0], [2.0, 1.0, 1.0, 1.0]]  # ceil(0.8) = ceil(0.6) = 1 token


def test_rows_select_the_rows():
    r = rollouts([4, 4, 2])
    entropy = torch.tensor([[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.9]])  # of rows 1 and 2
    got = rows_gamma(CreditSettings(strategy="entropy", q=0.25), r, slice(1, 3), None, entropy)
    assert got.tolist() == [[1.5, 1.0, 1.0, 1.0], [1.5, 1.0, 1.0, 1.0]]  # row 2: 2 tokens, its 0.9 is padding


def test_random_strategy_amplifies_the_top_q_keyed_scores():
    r = rollouts([4, 4, 4, 4, 3], step=3, prompt_index=[0, 0, 1, 1, 2], sample_index=[0, 1, 0, 1, 0])
    settings = CreditSettings(strategy="random", q=0.5, seed=11)
    got = rows_gamma(settings, r, slice(0, 5), None, torch.zeros(5, 4))
    scores = keyed_scores(r, slice(0, 5), 11)[:, -4:]
    for row, n in enumerate([4, 4, 4, 4, 3]):
        top = set(scores[row, :n].topk(math.ceil(0.5 * n)).indices.tolist())
        assert got[row].tolist() == [1.5 if t in top else 1.0 for t in range(4)]


# ------------------------------------------------------------------------------------------ keyed_scores


def test_keyed_scores_are_keyed_to_the_completion_position():
    """A completion's scores do not depend on its batch: its row, the prompt width or the completion width."""
    a = rollouts([4, 4], prompt_width=3, width=4, prompt_index=[5, 6], sample_index=[2, 3])
    b = rollouts([4, 4, 4], prompt_width=6, width=9, prompt_index=[1, 6, 5], sample_index=[0, 3, 2])
    sa, sb = keyed_scores(a, slice(0, 2), 4), keyed_scores(b, slice(0, 3), 4)
    assert sa.shape == (2, 7) and sb.shape == (3, 15)
    torch.testing.assert_close(sa[0, 3:], sb[2, 6:10])  # prompt 5, sample 2: completion tokens 0..3
    torch.testing.assert_close(sa[1, 3:], sb[1, 6:10])
    torch.testing.assert_close(keyed_scores(b, slice(1, 3), 4), sb[1:3])  # rows measured apart: the same draws


def test_keyed_scores_change_with_every_key():
    base = keyed_scores(rollouts([4], step=2, prompt_index=[1], sample_index=[0]), slice(0, 1), 0)
    others = [
        keyed_scores(rollouts([4], step=2, prompt_index=[1], sample_index=[0]), slice(0, 1), 1),  # seed
        keyed_scores(rollouts([4], step=3, prompt_index=[1], sample_index=[0]), slice(0, 1), 0),  # step
        keyed_scores(rollouts([4], step=2, prompt_index=[2], sample_index=[0]), slice(0, 1), 0),  # prompt
        keyed_scores(rollouts([4], step=2, prompt_index=[1], sample_index=[1]), slice(0, 1), 0),  # sample
    ]
    for other in others:
        assert (other != base).all()
    assert len(set(base[0].tolist())) == base.shape[1]  # every position its own draw
    assert ((base > 0) & (base < 1)).all() and base.dtype == torch.float32


def test_keyed_scores_use_their_own_stream():
    """The credit's draws are not the sampling's: the stream key differs (and keys are order-sensitive)."""
    assert SAMPLE_STREAM != CREDIT_STREAM
    r = rollouts([4], step=2, prompt_index=[1], sample_index=[0])
    got = keyed_scores(r, slice(0, 1), 5)
    sample_keys = mix(5, SAMPLE_STREAM, 2, torch.tensor([1]), torch.tensor([0]))
    sampling_like = keyed_uniform(mix(sample_keys[:, None], torch.arange(7)[None, :] - 3)).float()
    assert (got != sampling_like).all()


def test_keyed_scores_without_a_step_are_none():
    assert keyed_scores(rollouts([4], step=None), slice(0, 1), 0) is None


# ------------------------------------------------------------------------------------------ check_credit_layers


def test_check_credit_layers():
    model = tiny_model()  # 6 layers
    check_credit_layers(CreditSettings(strategy="coupled", layers=[0, 5]), model)
    for strategy in ("uniform", "random", "entropy"):  # they capture nothing: any layers pass
        check_credit_layers(CreditSettings(strategy=strategy, layers=[40]), model)
    for strategy in ("coupled", "local_chunk", "global_anchor"):
        with pytest.raises(ValueError, match=r"credit.layers=\[6\]: layer index 6 is out of range .* 6 layers"):
            check_credit_layers(CreditSettings(strategy=strategy, layers=[6]), model)


def test_keyed_scores_are_the_documented_function_of_the_keys():
    """``keyed_uniform(mix(mix(seed, CREDIT_STREAM, step, prompt, j), position))``: a run resumed by another version
    of the package draws the same tokens."""
    r = rollouts([4, 4], prompt_width=2, width=3, step=9, prompt_index=[3, 4], sample_index=[1, 0])
    got = keyed_scores(r, slice(0, 2), 21)
    for row, (prompt, j) in enumerate([(3, 1), (4, 0)]):
        key = mix(21, CREDIT_STREAM, 9, prompt, j)
        expected = keyed_uniform(mix(key, torch.arange(-2, 3))).float()
        torch.testing.assert_close(got[row], expected, rtol=0, atol=0)
