"""Tests written against the surviving mutants of ``rewards/builtin.py``: the Countdown, numeric and format rewards
on answers a hand can check, at the bounds, and the errors on columns of the wrong length."""

import re

import pytest

from lightning_reasonattn.rewards import answers, countdown_reward, format_reward, numeric_answer_reward
from lightning_reasonattn.rewards.completions import MAX_COMPLETION_CHARS

NUMBERS, TARGET = [44, 19, 35], 98  # 44 + 19 + 35 = 98


def test_countdown_reads_the_expression_after_the_last_colon_of_the_last_line():
    """``Step 3: Answer: 44 + 19 + 35`` holds the equation after its *last* colon: a right answer is paid."""
    assert countdown_reward(None, ["Step 3: Answer: 44 + 19 + 35."], [NUMBERS], [TARGET]) == [1.0]


def test_countdown_does_not_repair_a_malformed_equation():
    """Only a final period is dropped: ``44 + 19 + 35X`` is malformed and scores 0 (a reward that strips more pays
    it)."""
    assert countdown_reward(None, ["44 + 19 + 35X"], [NUMBERS], [TARGET]) == [0.0]
    assert countdown_reward(None, ["44 + 19 + 35"], [NUMBERS], [TARGET]) == [1.0]


def test_the_format_reward_accepts_a_completion_of_exactly_the_character_bound():
    """MAX_COMPLETION_CHARS is the longest completion that is scored; one more character scores 0."""
    shell = "<think></think><answer>1</answer>"
    text = "<think>" + "a" * (MAX_COMPLETION_CHARS - len(shell)) + "</think><answer>1</answer>"
    assert len(text) == MAX_COMPLETION_CHARS
    assert format_reward(None, [text, "a" + text]) == [1.0, 0.0]


def test_an_exact_answer_is_paid_with_zero_tolerance():
    """With ``rel_tol=abs_tol=0`` the comparison is ``|predicted - gold| <= 0``: the exact answer is right."""
    assert numeric_answer_reward(None, ["42", "43"], ["42", "42"], rel_tol=0, abs_tol=0, use_math_verify=False) == [
        1.0,
        0.0,
    ]
    # the bound itself: |1.5 - 1| == 0.5 * |1|
    assert numeric_answer_reward(None, ["1.5"], [1], rel_tol=0.5, abs_tol=0, use_math_verify=False) == [1.0]


def test_without_math_verify_a_latex_reference_is_refused(monkeypatch):
    """``use_math_verify=None`` with math-verify missing: a reference that is not a plain number is a data error,
    not an answer no completion can match."""
    monkeypatch.setattr(answers, "has_math_verify", lambda: False)
    with pytest.raises(ValueError, match="not a plain number"):
        numeric_answer_reward(None, ["x"], [r"\sqrt{2}"])


@pytest.mark.parametrize(
    ("target", "got"),
    [
        ([98] * 3, "3 values"),
        (5, "5"),
        ("x" * 100, "'" + "x" * 59),  # the repr, cut to 60 characters
    ],
)
def test_a_column_of_the_wrong_length_is_named_with_what_it_holds(target, got):
    """The error names the column, the count wanted and what was received (its count, or its repr cut short)."""
    message = f"countdown_reward: column 'target' must hold one value per completion (2), got {got}."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        countdown_reward(None, ["a", "b"], [NUMBERS] * 2, target)
