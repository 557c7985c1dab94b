"""Tests written against the surviving mutants of ``rewards/references.py``: which reference values are accepted
(the bounds are inclusive), how they read, and the numpy scalars a data frame hands over."""

from fractions import Fraction

import numpy as np
import pytest

from lightning_reasonattn.rewards.references import countdown_numbers, countdown_target, numeric_reference
from lightning_reasonattn.tasks.arithmetic import MAX_OPERANDS


def test_countdown_accepts_max_operands_numbers():
    """1 to MAX_OPERANDS numbers, both ends included; one more is refused."""
    numbers = list(range(1, MAX_OPERANDS + 1))
    assert countdown_numbers(numbers) == numbers
    with pytest.raises(ValueError, match="could never be solved"):
        countdown_numbers([*numbers, 1])


def test_a_target_of_exactly_max_number_digits_is_accepted():
    """10**99 and 10**100 - 1 have 100 digits (MAX_NUMBER_DIGITS) and are targets; 10**100 has 101."""
    assert countdown_target(10**99) == 10**99
    assert countdown_target(10**100 - 1) == 10**100 - 1
    with pytest.raises(ValueError, match="more than 100 digits"):
        countdown_target(10**100)


def test_a_padded_target_text_of_the_length_bound_is_read():
    """A text of 4 * MAX_NUMBER_DIGITS characters (here 398 spaces and ``98``) is read; the bound is inclusive."""
    assert countdown_target(" " * 398 + "98") == 98
    with pytest.raises(ValueError, match="over 100 digits"):
        countdown_target(" " * 399 + "98")


def test_integral_references_stay_exact():
    """A Fraction above 2**53 keeps every digit (not through a float); numpy's float32 and int64 are numbers."""
    assert countdown_target(Fraction(10**17 + 1)) == 10**17 + 1
    assert countdown_numbers([np.float32(3.0), np.int64(4)]) == [3, 4]


def test_numeric_reference_reads_numpy_scalars():
    """Bug fixed: a numpy int64 reference raised AttributeError (no ``bit_length``), a float32 one TypeError
    (``Fraction`` refuses it), instead of being read (a pandas column hands over such scalars)."""
    assert numeric_reference(np.int64(3)) == ("3", Fraction(3))
    assert numeric_reference(np.float32(2.5)) == ("2.5", Fraction(5, 2))


def test_a_numpy_boolean_is_named_a_boolean():
    """numpy's bool (named ``bool`` in numpy 2, ``bool_`` in 1) is refused as a boolean, as Python's is."""
    with pytest.raises(ValueError, match="a boolean, not an integer"):
        countdown_numbers([np.bool_(True)])


def test_numeric_reference_refuses_latex_unless_asked_to_verify():
    """Without ``verify`` (the default) a LaTeX reference is a data error; with it, it is kept for math-verify."""
    with pytest.raises(ValueError, match="not a plain number"):
        numeric_reference(r"\sqrt{2}")
    assert numeric_reference(r"\pi", verify=True) == (r"\pi", None)


def test_numeric_reference_of_another_type_is_named_without_a_wrong_fix():
    """Only bytes get "decode the column"; a list is named as a list."""
    with pytest.raises(ValueError, match=r"^\[1\] \(list\) is neither a number nor a string$"):
        numeric_reference([1])
    with pytest.raises(ValueError, match="decode the column"):
        numeric_reference(b"1")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (42, "42"),
        (10**99, "1" + "0" * 99),  # 100 digits: accepted, its text kept
        (1e-300, "1e-300"),  # a float's Fraction has a long denominator: its text is still kept
        (Fraction(1, 10**5000), ""),  # str() of a 5000-digit int raises: no text for math-verify
    ],
)
def test_numeric_reference_of_a_number_keeps_its_text(value, text):
    """A number's text is its ``str`` (math-verify compares it), except a fraction too long to print."""
    assert numeric_reference(value) == (text, Fraction(value))


def test_a_long_fraction_of_one_or_more_is_refused():
    """A value >= 1 with more than MAX_NUMBER_DIGITS digits in its terms can never be written by a completion."""
    with pytest.raises(ValueError, match="more than 100 digits"):
        numeric_reference(Fraction(3 * 10**150 + 1, 2 * 10**150))  # about 1.5


def test_a_hundred_digits_glued_to_a_numeric_character_is_not_called_too_long():
    """``1...1½`` (100 digits) is refused as not a plain number, not as a number of more than 100 digits."""
    with pytest.raises(ValueError, match="not a plain number"):
        numeric_reference("1" * 100 + "½")


def test_a_latex_reference_of_exactly_the_math_verify_bound_is_kept():
    """A LaTeX answer of MATH_VERIFY_MAX_CHARS characters is kept for math-verify; one more is refused."""
    text = r"\sqrt{2}" + " " * 192
    assert numeric_reference(text, verify=True) == (text, None)
    with pytest.raises(ValueError, match="more than math-verify reads"):
        numeric_reference(text + " ", verify=True)
