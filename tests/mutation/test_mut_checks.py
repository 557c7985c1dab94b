"""functional/_checks.py: what the argument checks accept and refuse, and what their errors tell the user (issue 26).

The references are the contract written out by hand: the module docstring (any integral scalar where an integer is
meant, any real scalar where a number is meant, never a bool), the docstring of each check (inclusive bounds unless
open, at most ``MAX_INTEGER`` for an integer) and the project's rule that an error names the bad value and the fix.
"""

import math
import re
from typing import Literal

import numpy as np
import pytest
import torch

from lightning_reasonattn.functional._checks import (
    MAX_INTEGER,
    as_int,
    as_real,
    check_choice,
    check_fraction,
    check_horizon,
    check_number,
    check_response_mask,
    check_window,
)

# ------------------------------------------------------------------------------------------ what counts as a number

BOOLS = [True, False, np.True_, np.False_]
NOT_NUMBERS = ["0.5", "3", None, 1 + 0j, [1], torch.tensor(0.5)]
NON_FINITE = [math.nan, math.inf, -math.inf, np.float32("nan")]


@pytest.mark.parametrize("value", BOOLS, ids=repr)
def test_booleans_are_not_numbers(value):
    """Bug class: a bool (Python's or numpy's) accepted where a number is meant, read silently as 1 or 0."""
    assert as_int(value) is None
    assert as_real(value) is None
    for integer in (False, True):
        with pytest.raises(ValueError, match=rf"^flag={re.escape(repr(value))} is invalid"):
            check_number("flag", value, integer=integer)
    with pytest.raises(ValueError, match=r"^head_fraction="):
        check_fraction(value, "head_fraction")


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_strings_and_other_objects_are_not_numbers(value):
    """Bug class: a string such as "0.5" parsed into a number (or None crashing with a TypeError that names nothing)
    instead of a ValueError naming the value."""
    assert as_real(value) is None
    assert as_int(value) is None
    for bounds in ({}, {"low": 0}, {"high": 1}, {"low": 0, "high": 1}):
        with pytest.raises(ValueError, match=r"^x=.* is invalid"):
            check_number("x", value, **bounds)
    with pytest.raises(ValueError, match=r"^head_fraction="):
        check_fraction(value, "head_fraction")


@pytest.mark.parametrize("value", NON_FINITE, ids=repr)
@pytest.mark.parametrize("bounds", [{}, {"low": 0}, {"high": 1}, {"low": -1, "low_open": True}], ids=repr)
def test_nan_and_infinity_are_refused_whatever_the_bounds(value, bounds):
    """Bug class: NaN or +-inf accepted as a setting (a NaN learning rate, an infinite temperature): check_number
    promises a finite number, with or without bounds."""
    with pytest.raises(ValueError, match=r"^x=.* is invalid: it must be a finite number"):
        check_number("x", value, **bounds)


def test_numpy_scalars_are_numbers_and_come_back_as_python_ones():
    """Bug class: numpy integers and floats (what a config loaded through numpy holds) refused, or passed on as numpy
    scalars that overflow or print oddly downstream."""
    for value in (np.int8(3), np.int32(3), np.int64(3), np.uint16(3)):
        assert as_int(value) == 3 and type(as_int(value)) is int
        assert check_number("n", value, low=1, integer=True) == 3
        assert type(check_number("n", value, low=1, integer=True)) is int
        assert check_window(value) == 3
        assert check_horizon((value, value)) == (3, 3)
    for value in (np.float16(0.5), np.float32(0.5), np.float64(0.5)):
        assert as_real(value) == 0.5 and type(as_real(value)) is float
        assert check_fraction(value, "head_fraction") == 0.5
        assert type(check_number("x", value, low=0, high=1)) is float
    assert check_number("x", 2, low=0) == 2.0  # an int where a number is meant
    assert check_number("x", np.int64(2), low=0) == 2.0


# ------------------------------------------------------------------------------------------ bounds, exactly at the edge


def test_closed_bounds_accept_the_bound_and_open_ones_refuse_it():
    """Bug class: an open bound (lora.alpha > 0, top_p in (0, 1], dropout < 1) that lets its own boundary through,
    or a closed one that refuses it."""
    assert check_number("x", 0.0, low=0) == 0.0
    assert check_number("x", 1.0, high=1) == 1.0
    assert check_number("x", 1e-12, low=0, low_open=True) == 1e-12
    assert check_number("x", 1 - 1e-12, high=1, high_open=True) == 1 - 1e-12
    with pytest.raises(ValueError, match=r"^x=0\.0 is invalid"):
        check_number("x", 0.0, low=0, low_open=True)
    with pytest.raises(ValueError, match=r"^x=1\.0 is invalid"):
        check_number("x", 1.0, high=1, high_open=True)
    with pytest.raises(ValueError, match=r"^x=1 is invalid"):
        check_number("x", 1, low=1, high=5, low_open=True, integer=True)
    with pytest.raises(ValueError, match=r"^x=5 is invalid"):
        check_number("x", 5, low=1, high=5, high_open=True, integer=True)


def test_the_largest_integer_is_accepted_and_one_more_refused():
    """Bug class: an off-by-one at MAX_INTEGER (the documented largest count, window or horizon refused) or a larger
    integer let through where no bound is given (it overflows the int32 tensors it sizes). A bound the caller gives
    is the caller's: a seed goes to 2**63 - 1 (capped at MAX_INTEGER, ``seed=2**32`` was refused with a message
    saying "at most 2147483647 (at most 2**63 - 1)")."""
    assert MAX_INTEGER == 2147483647
    assert check_number("n", MAX_INTEGER, integer=True) == MAX_INTEGER
    with pytest.raises(ValueError, match=r"^n=2147483648 is invalid: it must be an integer <= 2147483647\.$"):
        check_number("n", MAX_INTEGER + 1, integer=True)
    assert check_number("seed", 2**32, low=0, high=2**63 - 1, integer=True) == 2**32
    with pytest.raises(ValueError, match=r"^seed=9223372036854775808 is invalid: .*<= 9223372036854775807"):
        check_number("seed", 2**63, low=0, high=2**63 - 1, integer=True)
    assert check_window(MAX_INTEGER) == MAX_INTEGER
    assert check_window(1) == 1
    for bad in (0, -1, MAX_INTEGER + 1, 2.0, True, None):
        with pytest.raises(ValueError, match=rf"^window={re.escape(repr(bad))} is invalid"):
            check_window(bad)
    assert check_horizon((0, MAX_INTEGER)) == (0, MAX_INTEGER)
    with pytest.raises(ValueError, match=r"^horizon=\(0, 2147483648\) is invalid"):
        check_horizon((0, MAX_INTEGER + 1))


def test_horizon_edges_and_bad_halves():
    """Bug class: a one-token horizon (lo == hi, the spec's own FAI over exactly one row) refused, or a pair with one
    bad half crashing with a TypeError about None instead of a ValueError naming the horizon."""
    assert check_horizon((0, 0)) == (0, 0)
    assert check_horizon((5, 5)) == (5, 5)
    assert check_horizon([10, 100]) == (10, 100)
    assert type(check_horizon((np.int64(1), 2))[0]) is int
    for bad in ((1.5, 10), (1, 10.0), (True, 10), (1, None), (None, 5), (-1, 5), (6, 5), (1, 2, 3), 5, "ab"):
        with pytest.raises(ValueError, match=rf"^horizon={re.escape(repr(bad))} is invalid"):
            check_horizon(bad)


def test_fraction_edges():
    """Bug class: the fraction's bounds moved (1 refused, 0 accepted)."""
    assert check_fraction(1, "head_fraction") == 1.0
    assert check_fraction(1e-9, "head_fraction") == 1e-9
    for bad in (0, 0.0, -0.1, 1.0000001, math.nan):
        with pytest.raises(ValueError, match=r"^head_fraction=.* is invalid"):
            check_fraction(bad, "head_fraction")


# ------------------------------------------------------------------------------------------ what the errors say


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        # The bounds a user must meet, as the message states them: the operator (open or closed), the number, the
        # kind (integer or not), the caller's fix.
        (-1.0, {"low": 0, "high": 1, "low_open": True}, "x=-1.0 is invalid: it must be a finite number > 0 and <= 1."),
        (
            2.0,
            {"low": 0.5, "high": 1.5, "high_open": True},
            "x=2.0 is invalid: it must be a finite number >= 0.5 and < 1.5.",
        ),
        (-1.0, {"low": 0}, "x=-1.0 is invalid: it must be a finite number >= 0."),
        (-1.0, {"low": 0.0, "low_open": True}, "x=-1.0 is invalid: it must be a finite number > 0."),
        (5.0, {"high": 1, "fix": " (a fraction)"}, "x=5.0 is invalid: it must be a finite number <= 1 (a fraction)."),
        (5.0, {"high": 1.0, "high_open": True}, "x=5.0 is invalid: it must be a finite number < 1."),
        ("a", {}, "x='a' is invalid: it must be a finite number."),
        (0, {"low": 1, "integer": True}, "x=0 is invalid: it must be an integer >= 1 and <= 2147483647."),
        (2.5, {"integer": True}, "x=2.5 is invalid: it must be an integer <= 2147483647."),
        (
            9,
            {"low": 0, "high": 5, "integer": True, "fix": " (0 writes none)"},
            "x=9 is invalid: it must be an integer >= 0 and <= 5 (0 writes none).",
        ),
    ],
)
def test_check_number_message_states_the_bounds_the_check_applies(value, kwargs, message):
    """Bug class: an error that states other bounds than the ones checked (">= 0" where 0 is refused), a bound
    printed inexactly (2.14748e+09 for 2147483647), "a finite number" where only integers pass, or no fix."""
    with pytest.raises(ValueError) as info:
        check_number("x", value, **kwargs)
    assert str(info.value) == message


def test_check_horizon_message_gives_the_rule_and_an_example():
    """Bug class: the horizon error without its fix (the rule and an example pair)."""
    with pytest.raises(ValueError) as info:
        check_horizon((5, 1))
    assert str(info.value) == (
        "horizon=(5, 1) is invalid: pass a pair (lo, hi) of integers with 0 <= lo <= hi <= 2147483647, for example "
        "(10, 100)."
    )


def test_check_choice_names_the_value_and_the_choices():
    """Bug class: an unknown choice accepted, or its error garbled (a default hint that is not empty)."""
    check_choice("mode", "a", ("a", "b"))
    check_choice("mode", "b", Literal["a", "b"])
    for choices in (("a", "b"), Literal["a", "b"]):
        with pytest.raises(ValueError) as info:
            check_choice("mode", "c", choices)
        assert str(info.value) == "mode='c' is unknown: use one of 'a', 'b'."
    with pytest.raises(ValueError) as info:
        check_choice("mode", "c", ("a",), hint=" for a plain model")
    assert str(info.value) == "mode='c' is unknown for a plain model: use one of 'a'."


def test_float_response_mask_error_says_what_the_mask_means():
    """Bug class: the float-mask error without the mask's meaning (True at response tokens) or the fix."""
    assert check_response_mask(torch.tensor([[0, 1, 1]]), (1, 3)).tolist() == [[False, True, True]]
    with pytest.raises(TypeError) as info:
        check_response_mask(torch.tensor([[0.0, 1.0, 1.0]]), (1, 3))
    message = str(info.value)
    assert message.startswith("response_mask has dtype torch.float32: a mask must be bool (or integer 0/1), True at ")
    assert "True at response tokens;" in message
    assert "response_mask.bool()" in message


def test_a_survey_takes_every_seed_its_command_line_takes():
    """``reasonattn survey --seed 3000000000`` passed the argument parser and then failed in the settings, whose
    integer check capped every bound at 2**31 - 1."""
    from lightning_reasonattn.arguments import MAX_SEED, random_seed
    from lightning_reasonattn.survey.settings import SurveySettings

    for seed in (2**31, 3_000_000_000, MAX_SEED):
        assert random_seed(str(seed)) == seed
        assert SurveySettings(seed=seed).seed == seed
    with pytest.raises(ValueError, match=r"seed=9223372036854775808 is invalid"):
        SurveySettings(seed=MAX_SEED + 1)
