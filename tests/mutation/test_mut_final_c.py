"""Tests written against the last surviving mutants of ``rewards/``: the zero that follows a division by zero, and
numpy 1.x's boolean (its type is named ``bool_``; numpy 2 names it ``bool``)."""

from fractions import Fraction

import pytest

from lightning_reasonattn.rewards.answers import parse_number
from lightning_reasonattn.rewards.builtin import numeric_answer_reward
from lightning_reasonattn.rewards.references import countdown_numbers, countdown_target


@pytest.mark.parametrize(
    ("text", "value"),
    [("7/0-3", Fraction(-3)), ("7/0-0", Fraction(0)), ("7/0 -0", Fraction(0)), ("5 \\div 0-0", Fraction(0))],
)
def test_a_signed_last_number_right_after_a_division_by_zero_is_read(text, value):
    """The last number is refused only when it is itself the divisor of a division by zero; a signed number that
    follows one (``7/0-3`` reads as -3) is read, zero as any other: ``-0`` is 0, not "no number"."""
    assert parse_number(text) == value


def test_a_zero_after_a_division_by_zero_is_paid_as_the_last_number():
    """Through the reward: ``7/0-0`` pays a gold 0, as ``7/0-3`` pays a gold -3; ``7/0`` itself pays nothing."""
    rewards = numeric_answer_reward(None, ["\\boxed{7/0-0}", "\\boxed{7/0-3}", "\\boxed{7/0}"], [0, -3, 0])
    assert rewards == [1.0, 1.0, 0.0]


class _Numpy1Bool:
    """Stands for numpy 1.x's boolean scalar: a type named ``bool_``, no ``numbers`` ABC (numpy 2 is installed here)."""


_Numpy1Bool.__name__ = "bool_"


@pytest.mark.parametrize("check", [countdown_target, lambda value: countdown_numbers([value])])
def test_a_numpy_1_boolean_is_named_a_boolean(check):
    """numpy 1.x's ``bool_`` is refused as a boolean, with the message Python's ``True`` gets, not "not an integer"."""
    with pytest.raises(ValueError, match="a boolean, not an integer"):
        check(_Numpy1Bool())
