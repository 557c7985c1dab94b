"""The built-in reward functions: Countdown equations, numeric answers, the think/answer format.

Each returns values in ``[0, 1]`` and never raises on a completion's text, whatever it holds (the bounds are in
[`lightning_reasonattn.rewards.answers`][lightning_reasonattn.rewards.answers]); a completion of another type (bytes,
a message whose text is a number) is refused with a ``TypeError`` that names its row and type. Completions are
untrusted input: they are parsed, never evaluated. The reference columns are checked by type and size at each call
(and when a file is read, see [`lightning_reasonattn.rewards.references`][lightning_reasonattn.rewards.references]):
a bad one raises a ``ValueError`` that names the column, the row and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ..tasks.arithmetic import ArithmeticParseError, parse_arithmetic
from . import answers as _answers
from .answers import (
    MATH_VERIFY_TIMEOUT,
    MAX_SCAN_CHARS,
    extract_answer_block,
    extract_numeric_answer,
    parse_number,
)
from .completions import MAX_COMPLETION_CHARS, completion_text
from .references import checked_column, countdown_numbers, countdown_target, numeric_answer_column, numeric_reference

_ANSWER_OPEN = "<answer>"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_CLOSE = "</answer>"


def _per_completion(name: str, column: str, values: Any, n: int) -> list:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = f"{len(values)} values" if isinstance(values, (list, tuple)) else repr(values)[:60]
        raise ValueError(f"{name}: column {column!r} must hold one value per completion ({n}), got {got}.")
    return list(values)


def _texts(name: str, completions: Sequence) -> list[str]:
    """The text of every completion; a completion of another type raises a TypeError naming its row."""
    texts = []
    for row, completion in enumerate(completions):
        try:
            texts.append(completion_text(completion))
        except TypeError as err:
            raise TypeError(f"{name}: completion {row}: {err}") from None
    return texts


# ------------------------------------------------------------------------------------------ countdown


def extract_countdown_expression(text: str) -> str | None:
    """The final equation of a Countdown completion.

    The content of the last ``<answer>...</answer>`` block if there is one; ``None`` if an ``<answer>`` tag
    was opened but not closed (a truncated answer); else the last non-empty line, after its last ``:`` (so
    ``"Answer: 1 + 2"`` gives ``" 1 + 2"``), without a trailing period.

    Args:
        text: a completion's text.

    Returns:
        The expression text, or ``None``.
    """
    block = extract_answer_block(text)
    if block is not None:
        return block
    tail = text[-MAX_SCAN_CHARS:]
    if _ANSWER_OPEN in tail:
        return None
    lines = [line for line in tail.splitlines() if line.strip()]
    return lines[-1].rsplit(":", 1)[-1].strip().rstrip(".") if lines else None


def countdown_equation_correct(expression: str, numbers: Sequence[int], target: int | Fraction) -> bool:
    """Whether ``expression`` uses each of ``numbers`` exactly once and equals ``target``.

    One ``=`` is allowed (``"(93 - 43) + 1 = 51"``): then one side must use the numbers and every side must
    equal the target.

    Args:
        expression: untrusted arithmetic, parsed by [`parse_arithmetic`][parse_arithmetic].
        numbers: the given numbers (a multiset: duplicates must be used as often as given).
        target: the value to reach.

    Returns:
        ``True`` if correct; ``False`` for a wrong or unparseable expression.
    """
    sides = expression.split("=", 2)
    if len(sides) > 2:
        return False
    try:
        parsed = [parse_arithmetic(side) for side in sides]
    except ArithmeticParseError:
        return False
    wanted = sorted(int(x) for x in numbers)
    target = Fraction(target)
    uses_numbers = any(sorted(operands) == wanted for _, operands in parsed)
    return uses_numbers and all(value == target for value, _ in parsed)


def countdown_reward(prompts, completions, numbers, target, format_score: float = 0.0, **kwargs) -> list[float]:
    """Countdown (TinyZero): 1.0 when the final equation uses every given number once and equals the target.

    The equation is found by [`extract_countdown_expression`][extract_countdown_expression] (the last ``<answer>``
    block, else the last line) and parsed by [`parse_arithmetic`][parse_arithmetic]; it is never evaluated as code.
    Exact rational arithmetic: ``100 / 3 * 3`` equals ``100``.

    Args:
        prompts: the prompts (unused).
        completions: ``[n]`` completions, strings or lists of messages.
        numbers: ``[n]`` lists of the given integers.
        target: ``[n]`` target integers.
        format_score: reward for a wrong answer that still sits in an ``<answer>`` block (TinyZero used 0.1);
            bind it with ``functools.partial``. Default 0.
        **kwargs: other columns, ignored.

    Returns:
        ``[n]`` rewards: 1.0, ``format_score`` or 0.0.

    Raises:
        ValueError: a column without one value per completion, ``numbers`` that are not a list of 1 to 16 unsigned
            integers of at most 12 digits, or a target that is not an integer of at most 100 digits (the message
            names the column and the row; see
            [`countdown_numbers`][lightning_reasonattn.rewards.references.countdown_numbers] and
            [`countdown_target`][lightning_reasonattn.rewards.references.countdown_target]).
        TypeError: a completion that is neither text nor a list of messages (the message names its row).

    Example:
        >>> countdown_reward(None, ["<answer>(93 - 43) + 1</answer>", "93 - 43 = 50"], [[93, 43, 1]] * 2, [51, 51])
        [1.0, 0.0]
    """
    name, n = "countdown_reward", len(completions)
    numbers = checked_column(name, "numbers", _per_completion(name, "numbers", numbers, n), countdown_numbers)
    targets = checked_column(name, "target", _per_completion(name, "target", target, n), countdown_target)
    rewards = []
    for text, nums, goal in zip(_texts(name, completions), numbers, targets, strict=True):
        expression = extract_countdown_expression(text)
        if expression is not None and countdown_equation_correct(expression, nums, goal):
            rewards.append(1.0)
        else:
            rewards.append(float(format_score) if extract_answer_block(text) is not None else 0.0)
    return rewards


# ------------------------------------------------------------------------------------ numeric answers


def numeric_answer_reward(
    prompts,
    completions,
    answer,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    use_math_verify: bool | None = None,
    math_verify_timeout: float | None = MATH_VERIFY_TIMEOUT,
    **kwargs,
) -> list[float]:
    """1.0 when the completion's final number equals the reference ``answer``, else 0.0.

    The reference is a number, or a string read by [`extract_numeric_answer`][extract_numeric_answer] (``\\boxed{}``,
    GSM8K's ``####``) that must then be exactly one number (``"1,234"``, ``"-3"``, ``"0.75"``, ``"3/4"``,
    ``"\\frac{3}{4}"``). The completion's answer is the last number of its ``<answer>`` block, else of its
    last ``\\boxed{}``, else after its last ``####``, else of its text; a number of more than
    [`MAX_NUMBER_DIGITS`][lightning_reasonattn.rewards.answers.MAX_NUMBER_DIGITS] digits is no number. When that
    built-in check says "different", or the reference is not a plain number (e.g. ``\\sqrt{2}``), and ``math_verify`` is
    installed (the ``math`` extra), math-verify gets the final say, on a short candidate and within
    ``math_verify_timeout`` seconds (see [`math_verify_equal`][lightning_reasonattn.rewards.answers.math_verify_equal]).

    Args:
        prompts: the prompts (unused).
        completions: ``[n]`` completions, strings or lists of messages.
        answer: ``[n]`` reference answers: numbers, or strings like ``"42"``, ``"... #### 1,234"``.
        rel_tol: relative tolerance of the comparison.
        abs_tol: absolute tolerance of the comparison.
        use_math_verify: ``None`` uses math-verify when importable; ``False`` never; ``True`` requires it.
        math_verify_timeout: seconds one math-verify comparison may take (main thread only); ``None``: no limit.
        **kwargs: other columns, ignored.

    Returns:
        ``[n]`` rewards in ``{0.0, 1.0}``.

    Raises:
        ValueError: ``answer`` without one value per completion, or a reference that is not a number or a string,
            not finite, longer than 100 digits, or not a plain number while math-verify is not used (see
            [`numeric_reference`][lightning_reasonattn.rewards.references.numeric_reference]; the message names the
            column and the row).
        TypeError: a completion that is neither text nor a list of messages (the message names its row).
        ImportError: ``use_math_verify=True`` without the package
            (``pip install 'lightning-reasonattn[math]'``).

    Example:
        >>> numeric_answer_reward(None, ["so 40 + 2 = \\\\boxed{42}", "I think 41"], ["#### 42", 42])
        [1.0, 0.0]
    """
    installed = use_math_verify is not False and _answers.has_math_verify()
    if use_math_verify and not installed:
        raise ImportError(
            "numeric_answer_reward(use_math_verify=True) needs math-verify: pip install 'lightning-reasonattn[math]'"
        )
    verify = use_math_verify is not False and installed
    name, n = "numeric_answer_reward", len(completions)
    answers = _per_completion(name, "answer", answer, n)
    references = checked_column(name, "answer", answers, numeric_reference, verify=verify)
    rewards = []
    for text, (gold_text, gold) in zip(_texts(name, completions), references, strict=True):
        predicted_text = extract_numeric_answer(text)
        predicted = parse_number(predicted_text) if predicted_text is not None else None
        ok = gold is not None and predicted is not None
        ok = ok and abs(predicted - gold) <= max(Fraction(abs_tol), Fraction(rel_tol) * abs(gold))
        if not ok and verify:
            ok = _answers.math_verify_equal(gold_text, text, math_verify_timeout)
        rewards.append(1.0 if ok else 0.0)
    return rewards


# ------------------------------------------------------------------------------------------- format


def matches_think_answer_format(text: str) -> bool:
    """Whether ``text`` is ``<think>...</think>`` then ``<answer>...</answer>``, with nothing else around.

    The opening ``<think>`` may be missing, for prompts that end with it (the TinyZero template); each tag
    appears exactly once, only whitespace may sit between ``</think>`` and ``<answer>`` and around the
    whole, and the answer is not blank. Plain string scans: linear time, no regular expression.

    Args:
        text: a completion's text.

    Returns:
        ``True`` if it follows the template.
    """
    if len(text) > MAX_COMPLETION_CHARS:
        return False
    body = text.strip()
    if body.startswith(_THINK_OPEN):
        body = body[len(_THINK_OPEN) :]
    tags = (_THINK_OPEN, _THINK_CLOSE, _ANSWER_OPEN, _ANSWER_CLOSE)
    if body.count(_THINK_OPEN) or any(body.count(tag) != 1 for tag in tags[1:]):
        return False
    _, after_think = body.split(_THINK_CLOSE)
    after_think = after_think.lstrip()
    if not (after_think.startswith(_ANSWER_OPEN) and after_think.endswith(_ANSWER_CLOSE)):
        return False
    return bool(after_think[len(_ANSWER_OPEN) : -len(_ANSWER_CLOSE)].strip())


def format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 for completions of the form ``<think>...</think><answer>...</answer>``, else 0.0.

    See [`matches_think_answer_format`][matches_think_answer_format] for the exact rule.

    Args:
        prompts: the prompts (unused).
        completions: ``[n]`` completions, strings or lists of messages.
        **kwargs: dataset columns, ignored.

    Returns:
        ``[n]`` rewards in ``{0.0, 1.0}``.

    Raises:
        TypeError: a completion that is neither text nor a list of messages (the message names its row).

    Example:
        >>> format_reward(None, ["<think>a</think>\\n<answer>1</answer>", "<answer>1</answer>"])
        [1.0, 0.0]
    """
    return [1.0 if matches_think_answer_format(text) else 0.0 for text in _texts("format_reward", completions)]


countdown_reward.reference_columns = {"numbers": countdown_numbers, "target": countdown_target}
numeric_answer_reward.reference_columns = {"answer": numeric_answer_column}
