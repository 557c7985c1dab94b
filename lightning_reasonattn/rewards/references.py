"""The reference columns of the built-in rewards (Countdown's ``numbers`` and ``target``, ``numeric``'s ``answer``),
checked by type and size: when a data file is read, and at every call.

A reference value comes from a user's data, not from the model, and a wrong one is a data error: it is refused with
one ``ValueError`` that names the value, the type received and the fix (the caller adds the column and the row, or the
file and the line), instead of being scored 0 for ever, read wrongly (``numbers: "33"`` as ``[3, 3]``, ``3.5`` as
``3``) or computed for seconds (the target ``"1e9999999"`` is an integer of ten million digits). Each check is bounded
by construction: it looks at a few values, and never converts a string of more than
[`MAX_NUMBER_DIGITS`][lightning_reasonattn.rewards.answers.MAX_NUMBER_DIGITS] digits.

A reward function declares its checks in a ``reference_columns`` attribute, ``{column: check(value, **keywords)}``;
[`record_check`][record_check] gathers those of a run's functions into one check of a record, which
[`load_prompts`][lightning_reasonattn.tasks.load_prompts] applies to every record of a file when it reads it.
"""

from __future__ import annotations

import functools
import math
import numbers as _numbers
import re
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from ..tasks.arithmetic import MAX_DIGITS, MAX_OPERANDS
from . import answers as _answers
from .answers import MATH_VERIFY_MAX_CHARS, MAX_NUMBER_DIGITS, extract_numeric_answer, parse_number
from .completions import brief_repr
from .math_screen import exploding_shape, unreadable_number
from .protocol import reward_name

_INTEGER_TEXT = re.compile(r"\s*[+\-]?[0-9]+(?:\.0*)?\s*")
_DIGIT_RUN = re.compile(r"[0-9]+")


def _received(value: Any) -> str:
    """``"'33' (str)"``: the value and the type actually received."""
    return f"{brief_repr(value)} ({type(value).__name__})"


def _integer(value: Any) -> int:
    """An integral number (int, numpy integer, or a float or fraction with no fractional part) as an int.

    Raises:
        ValueError: why it is not one (``"not an integer"``, ``"a boolean, not an integer"``, ...).
    """
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):  # numpy's: bool (2.x), bool_ (1.x)
        raise ValueError("a boolean, not an integer")
    if isinstance(value, _numbers.Integral):
        return int(value)
    if isinstance(value, _numbers.Real):
        if not isinstance(value, _numbers.Rational) and not math.isfinite(value):
            raise ValueError("not finite")
        exact = _exact(value)
        if exact.denominator != 1:
            raise ValueError("not an integer")
        return exact.numerator
    if isinstance(value, (bytes, bytearray)):
        raise ValueError("bytes, not an integer: decode the column")
    raise ValueError("not an integer")


def _exact(value: _numbers.Real) -> Fraction:
    """A real number as a Fraction of Python ints: ``Fraction`` refuses numpy's float32 and keeps a numpy integer as
    its numerator (which has no ``bit_length``)."""
    if isinstance(value, _numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    return Fraction(float(value))


def _digits(value: int) -> int:
    return len(str(abs(value))) if value.bit_length() < 4 * MAX_NUMBER_DIGITS else int(value.bit_length() * 0.30103) + 1


def countdown_numbers(value: Any, **_: Any) -> list[int]:
    """Countdown's given numbers: a list of 1 to ``MAX_OPERANDS`` integers in ``[0, 10**MAX_DIGITS)``.

    Those limits are the answer parser's ([`parse_arithmetic`][lightning_reasonattn.tasks.arithmetic.parse_arithmetic]):
    a number it cannot read (negative, longer than 12 digits) or more numbers than an answer may hold can never be
    used, so the problem could never be solved.

    Raises:
        ValueError: not a list, an item that is not an integer (``'a'``, ``3.5``, ``b'3'``, ``True``), or out of range.

    Example:
        >>> countdown_numbers([44, 19.0, 35])
        [44, 19, 35]
        >>> countdown_numbers("33")
        Traceback (most recent call last):
        ...
        ValueError: '33' (str) is not a list of integers: the column holds lists such as [44, 19, 35]
    """
    if not isinstance(value, (list, tuple)) or isinstance(value, (str, bytes)):
        raise ValueError(f"{_received(value)} is not a list of integers: the column holds lists such as [44, 19, 35]")
    if not 1 <= len(value) <= MAX_OPERANDS:
        raise ValueError(
            f"holds {len(value)} numbers: a Countdown answer uses 1 to {MAX_OPERANDS} (MAX_OPERANDS), so this problem "
            "could never be solved"
        )
    out = []
    for i, item in enumerate(value):
        try:
            number = _integer(item)
        except ValueError as err:
            raise ValueError(f"{brief_repr(value)} holds {_received(item)} at position {i}: {err}") from None
        if not 0 <= number < 10**MAX_DIGITS:
            raise ValueError(
                f"{brief_repr(value)} holds {brief_repr(number)} at position {i}: answers are read as unsigned numbers"
                f" of at most {MAX_DIGITS} digits (MAX_DIGITS), so it could never be used"
            )
        out.append(number)
    return out


def countdown_target(value: Any, **_: Any) -> Fraction:
    """Countdown's target: an integer (or an integer's text, ``"98"``) of at most ``MAX_NUMBER_DIGITS`` digits.

    Raises:
        ValueError: not an integer (``2.5``, ``inf``, ``"1e9999999"``, ``b"6"``, ``None``), or too long to be reached.

    Example:
        >>> countdown_target("98"), countdown_target(98.0)
        (Fraction(98, 1), Fraction(98, 1))
    """
    if isinstance(value, str):
        digits = sum(len(run) for run in _DIGIT_RUN.findall(value[: 4 * MAX_NUMBER_DIGITS]))
        if len(value) > 4 * MAX_NUMBER_DIGITS or digits > MAX_NUMBER_DIGITS:
            raise ValueError(f"{brief_repr(value)} (str) has over {MAX_NUMBER_DIGITS} digits: no equation reaches it")
        if not _INTEGER_TEXT.fullmatch(value):
            raise ValueError(f"{_received(value)} is not an integer's text such as '98'; fix the column")
        return Fraction(int(value.strip().split(".")[0]))
    try:
        number = _integer(value)
    except ValueError as err:
        raise ValueError(f"{_received(value)}: {err}") from None
    if _digits(number) > MAX_NUMBER_DIGITS:
        raise ValueError(f"{brief_repr(number)} has more than {MAX_NUMBER_DIGITS} digits: no equation reaches it")
    return Fraction(number)


def numeric_reference(value: Any, verify: bool = False) -> tuple[str, Fraction | None]:
    """``(text, exact value)`` of a reference answer of ``numeric_answer_reward``.

    A number, or a string read by
    [`extract_numeric_answer`][lightning_reasonattn.rewards.answers.extract_numeric_answer] (``"#### 1,234"``,
    ``"\\boxed{3/4}"``) that is one number; else (``"\\sqrt{2}"``) an answer for math-verify when ``verify``: at
    most ``MATH_VERIFY_MAX_CHARS`` characters and no shape that math-verify cannot evaluate in bounded time. The exact
    value is ``None`` for such a LaTeX answer.

    Args:
        value: the reference.
        verify: math-verify will compare non-plain answers (else they are refused).

    Raises:
        ValueError: ``None``, another type (bytes, a list, a dict), a number that is not finite, a number of more than
            ``MAX_NUMBER_DIGITS`` digits (a completion's number that long reads as no number, so it could never be
            matched), a string that holds no answer (``""``, ``"#### "``, ``"\\boxed{}"``) or a division by zero
            (``"0/0"``: no answer equals it; the same message with and without math-verify), or a string that is
            neither a plain number nor an answer math-verify may read (``"1_000"``, ``"5½"`` are neither).

    Example:
        >>> numeric_reference("Natalia sold 48 + 24 = 72 clips. #### 72")
        (' 72', Fraction(72, 1))
    """
    if value is None:
        raise ValueError("is null (None): every record needs a reference answer")
    if isinstance(value, bool) or not isinstance(value, (_numbers.Real, str)):
        fix = ": decode the column" if isinstance(value, (bytes, bytearray)) else ""
        raise ValueError(f"{_received(value)} is neither a number nor a string{fix}")
    if isinstance(value, _numbers.Real):
        if not isinstance(value, _numbers.Rational) and not math.isfinite(value):
            raise ValueError(f"{_received(value)} is not finite")
        exact = _exact(value)
        if max(_digits(exact.numerator), _digits(exact.denominator)) > MAX_NUMBER_DIGITS and abs(exact) >= 1:
            raise ValueError(
                f"{brief_repr(value)} has more than {MAX_NUMBER_DIGITS} digits (MAX_NUMBER_DIGITS): a completion's "
                "number that long reads as no number, so it could never be matched"
            )
        short = max(_digits(exact.numerator), _digits(exact.denominator)) <= MAX_NUMBER_DIGITS
        # str() of a fraction of 4300-digit terms raises (a float's never does): math-verify then gets no text
        return (str(value) if short or not isinstance(value, _numbers.Rational) else ""), exact
    text = extract_numeric_answer(value)
    if text is None:
        raise ValueError(
            f"{brief_repr(value)} holds no answer: every record needs a reference answer (an empty text, or an empty "
            "\\boxed{}, <answer> block or #### line, is none)"
        )
    gold = parse_number(text, strict=True)
    if gold is not None:
        return text, gold
    unreadable = unreadable_number(text[:10_000])
    if unreadable == "a division by zero":
        raise ValueError(f"{brief_repr(value)} holds a division by zero: no answer equals it; fix the answer column")
    if sum(len(run) for run in _DIGIT_RUN.findall(text[:10_000])) > MAX_NUMBER_DIGITS and parse_number(text) is None:
        raise ValueError(
            f"{brief_repr(value)} holds a number of more than {MAX_NUMBER_DIGITS} digits (MAX_NUMBER_DIGITS): a "
            "completion's number that long reads as no number, so it could never be matched"
        )
    if not verify:
        raise ValueError(
            f"{brief_repr(value)} is not a plain number; fix the answer column, or install math-verify (pip install "
            "'lightning-reasonattn[math]') to compare LaTeX answers"
        )
    if len(text) > MATH_VERIFY_MAX_CHARS:
        raise ValueError(
            f"{brief_repr(value)} is not a plain number, and its {len(text)} characters are more than math-verify "
            f"reads ({MATH_VERIFY_MAX_CHARS}, MATH_VERIFY_MAX_CHARS): shorten the answer"
        )
    shape = exploding_shape(text)
    if shape is not None:
        raise ValueError(
            f"{brief_repr(value)} holds {shape}, which math-verify cannot evaluate in bounded time: write the value "
            "out, or leave the record out"
        )
    if unreadable is not None:
        raise ValueError(f"{brief_repr(value)} holds {unreadable}, which no answer is read as: write the number out")
    return text, None


def numeric_answer_column(value: Any, use_math_verify: bool | None = None, **_: Any) -> tuple[str, Fraction | None]:
    """The check of ``numeric_answer_reward``'s ``answer`` column as a file is read:
    [`numeric_reference`][numeric_reference] with math-verify when it is installed and not turned off
    (``use_math_verify=False``)."""
    return numeric_reference(value, verify=use_math_verify is not False and _answers.has_math_verify())


def checked_column(name: str, column: str, values: Sequence[Any], check: Callable[..., Any], **keywords: Any) -> list:
    """``[check(value) for value in values]``; a ``ValueError`` names the function, the column and the row."""
    out = []
    for row, value in enumerate(values):
        try:
            out.append(check(value, **keywords))
        except ValueError as err:
            raise ValueError(f"{name}: column {column!r}, row {row}: {err}.") from None
    return out


def record_check(funcs: Sequence[Callable]) -> Callable[[Mapping[str, Any]], None] | None:
    """One check of a record: every ``reference_columns`` check of ``funcs`` on the columns the record has.

    A ``functools.partial`` passes its keywords to its function's checks (``use_math_verify=False`` refuses LaTeX
    answers without math-verify, as the call would).

    Args:
        funcs: reward functions; those without a ``reference_columns`` attribute check nothing.

    Returns:
        ``check(record)``, raising ``ValueError("column 'target': ...")``; ``None`` when no function checks anything.

    Example:
        >>> from lightning_reasonattn.rewards import countdown_reward
        >>> check = record_check([countdown_reward])
        >>> try:
        ...     check({"prompt": "...", "numbers": [3, 5], "target": "1e9999999"})
        ... except ValueError as err:
        ...     print(err)
        column 'target' (countdown_reward): '1e9999999' (str) is not an integer's text such as '98'; fix the column
    """
    checks = []
    for fn in funcs:
        keywords: dict[str, Any] = {}
        inner = fn
        while isinstance(inner, functools.partial):
            keywords = {**inner.keywords, **keywords}
            inner = inner.func
        for column, check in (getattr(inner, "reference_columns", None) or {}).items():
            checks.append((column, check, keywords, reward_name(fn)))
    if not checks:
        return None

    def check(record: Mapping[str, Any]) -> None:
        for column, check_value, keywords, name in checks:
            if column in record:
                try:
                    check_value(record[column], **keywords)
                except ValueError as err:
                    raise ValueError(f"column {column!r} ({name}): {err}") from None

    return check
