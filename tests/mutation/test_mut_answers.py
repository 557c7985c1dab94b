"""Tests written against the surviving mutants of ``rewards/answers.py``: where a completion's final answer is found
and the number it holds, and what math-verify is allowed to see. Each expected value is worked by hand."""

from fractions import Fraction

import pytest

from lightning_reasonattn.rewards import answers
from lightning_reasonattn.rewards.answers import (
    extract_answer_block,
    extract_numeric_answer,
    math_verify_candidate,
    math_verify_equal,
    parse_number,
)


def test_the_last_boxed_answer_counts_not_the_first():
    """A completion that boxes a draft then its final answer is graded on the final one (a first-match bug pays
    the draft)."""
    assert extract_numeric_answer(r"first try \boxed{1}, no: \boxed{2}") == "2"
    assert parse_number(extract_numeric_answer(r"\boxed{\frac{1}{2}} then \boxed{7}")) == 7


def test_an_unclosed_answer_tag_after_a_complete_block_does_not_hide_it():
    """The last *complete* block counts: an ``<answer>`` opened after it must not make the answer empty."""
    assert extract_answer_block("<answer>42</answer> and then <answer>") == "42"
    assert extract_numeric_answer("<answer>42</answer> and then <answer>") == "42"


def test_a_number_of_exactly_max_number_digits_is_read():
    """The bound is *more than* MAX_NUMBER_DIGITS digits: a 100-digit answer is a number, 101 digits none."""
    assert parse_number("1" * 100) == int("1" * 100)
    assert parse_number("1" * 101) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [(r"\$5", 5), ("$5", 5), ("5.", 5), ("42.", 42), (r"1\!000", 1000), ("1,234", 1234)],
)
def test_strict_reading_ignores_dollars_thin_spaces_and_a_final_period(text, value):
    """A reference written ``\\$5``, ``$5``, ``42.`` or ``1\\!000`` is the number (strict mode must not refuse it)."""
    assert parse_number(text, strict=True) == value


@pytest.mark.parametrize("text", ["5X", ".5.", "x5", "5 6"])
def test_strict_reading_refuses_anything_else(text):
    """Strict mode strips whitespace and one kind of trailing mark only (the period): ``5X`` is no number."""
    assert parse_number(text, strict=True) is None


def test_a_plain_number_after_a_fraction_is_the_last_number():
    """``\\frac{1}{2} ... 7`` ends on 7: the fraction wins only when it is the last number."""
    assert parse_number(r"\frac{1}{2} so the answer is 7") == 7
    assert parse_number(r"3 and then \frac{1}{2}") == Fraction(1, 2)
    assert parse_number(r"\frac{1}{2}") == Fraction(1, 2)


def test_a_division_by_zero_at_the_start_of_the_text_is_no_number():
    """``\\div 0`` (the whole answer) reads as no number, not 0: else a gold 0 pays a malformed answer."""
    assert parse_number(r"\div 0") is None
    assert parse_number("/0") is None
    assert parse_number(r"5 \div 0") is None
    assert parse_number("5 - 0") == 0


def test_math_verify_candidate_keeps_boxed_latex_as_it_is():
    """A block holding ``\\boxed`` is LaTeX already: not wrapped in ``$...$``; other blocks are."""
    assert math_verify_candidate(r"<answer>\boxed{\sqrt{2}}</answer>") == r"\boxed{\sqrt{2}}"
    assert math_verify_candidate(r"<answer> \sqrt{2} </answer>") == r"$\sqrt{2}$"


def test_math_verify_candidate_bounds_are_inclusive():
    """A block of exactly MATH_VERIFY_MAX_CHARS characters, and a digit run of exactly MAX_NUMBER_DIGITS, are read;
    one more is refused."""
    block = r"\sqrt{2}" + " " * 192
    assert len(block) == 200
    assert math_verify_candidate(f"<answer>{block}</answer>") == r"$\sqrt{2}$"
    assert math_verify_candidate(f"<answer>{block} </answer>") is None
    assert math_verify_candidate("<answer>" + "1" * 100 + "</answer>") == "$" + "1" * 100 + "$"
    assert math_verify_candidate("<answer>" + "1" * 101 + "</answer>") is None


class _Worker:
    """Stands for the math-verify child process: records what it is asked, answers "equal"."""

    def __init__(self):
        self.calls = []

    def equal(self, gold, candidate, timeout):
        self.calls.append((gold, candidate))
        return True


@pytest.fixture
def worker(monkeypatch):
    fake = _Worker()
    monkeypatch.setattr(answers, "has_math_verify", lambda: True)
    monkeypatch.setattr(answers, "_WORKER", fake)
    return fake


def test_math_verify_never_sees_an_exploding_or_unreadable_gold(worker):
    """A short gold that is a power tower, or a division by zero, is refused before the child process: no hang and
    no wrong "equal"."""
    assert math_verify_equal("9^{9^{9}}", "<answer>2</answer>") is False
    assert math_verify_equal("0/0", "<answer>1</answer>") is False
    assert worker.calls == []


def test_math_verify_sees_a_gold_of_exactly_the_character_bound(worker):
    """A gold of MATH_VERIFY_MAX_CHARS characters is compared (the bound is inclusive); one more is not."""
    gold = r"\sqrt{2}" + " " * 192
    assert math_verify_equal(gold, r"<answer>\sqrt{2}</answer>") is True
    assert worker.calls == [(r"$\sqrt{2}$", r"$\sqrt{2}$")]
    assert math_verify_equal(gold + " ", r"<answer>\sqrt{2}</answer>") is False
    assert len(worker.calls) == 1


def test_math_verify_is_not_asked_about_an_empty_candidate(worker):
    """A readable gold against a blank tail: nothing to compare, "not equal" without the child process."""
    assert math_verify_equal("2", "   ") is False
    assert worker.calls == []


# ------------------------------------------------------------------------------------------ found by the review
# of the survivors (fixed in the code): a sign, a far divisor, a super-linear pattern


@pytest.mark.parametrize(("text", "value"), [("−5", -5), ("x = −5", -5), (r"\frac{−3}{4}", Fraction(-3, 4))])
def test_the_typeset_minus_sign_is_a_minus(text, value):
    """U+2212, the minus of typeset math, makes the number negative: read as 5, a wrong sign was paid."""
    assert parse_number(text) == value


def test_a_wrong_sign_in_typeset_minus_is_not_paid():
    from lightning_reasonattn.rewards import numeric_answer_reward

    got = numeric_answer_reward(None, ["<answer>−5</answer>", "<answer>−5</answer>"], ["#### 5", "#### -5"])
    assert got == [0.0, 1.0]


@pytest.mark.parametrize("gap", [0, 1, 250, 5000])
def test_a_division_by_zero_is_no_number_however_far_the_divisor(gap):
    """``1/<spaces>0`` and ``\\frac{<long>}{0}`` are divisions by zero at any distance: the old look-back of 200
    characters read them as 0 and paid a gold of 0."""
    assert parse_number("1/" + " " * gap + "0") is None
    assert parse_number(r"\frac{" + "x" * gap + "}{0}") is None
    assert parse_number(r"5 \div" + " " * gap + "0") is None


def test_the_zero_divisor_pattern_is_linear_in_a_run_of_spaces():
    """``/`` then 20,000 spaces: the old pattern (three ``\\s*`` around optional characters) tried every split of
    the run, cubic time (1,000 spaces took 5 s, this input hours: the test run would not end). Its matches on short
    strings are unchanged (compared on 300,000 random strings of its characters when it was rewritten)."""
    from lightning_reasonattn.rewards.math_screen import ZERO_DIVISOR

    assert ZERO_DIVISOR.search("/" + " " * 20_000 + "x") is None
    assert ZERO_DIVISOR.search("/" + " " * 20_000 + "0").span() == (0, 20_002)
    assert parse_number("7/" + " " * 20_000 + "x") == 7
