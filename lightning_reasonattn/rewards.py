"""Reward functions for RL from verifiable rewards, with TRL's signature.

A reward function is ``fn(prompts, completions, **columns) -> list[float]``, called with keywords: one float
per completion. ``prompts[i]`` is the prompt of ``completions[i]`` (a prompt with G completions appears G
times), and every dataset column arrives as a keyword holding one value per completion, so a TRL
``GRPOTrainer`` reward function works here unchanged. A completion is a string or, in TRL's conversational
format, a list of ``{"role", "content"}`` messages; :func:`completion_text` reads both. Functions must accept
``**kwargs``: the trainer may pass columns a function does not use.

Built in, each returning values in ``[0, 1]``:

- :func:`countdown_reward`: 1.0 when the final equation uses the given ``numbers`` each exactly once and
  equals ``target`` (columns ``numbers``, ``target``). Completions are untrusted input: they are parsed by
  :func:`parse_arithmetic`, never evaluated.
- :func:`numeric_answer_reward`: 1.0 when the final number equals the ``answer`` column.
- :func:`format_reward`: 1.0 when the completion is ``<think>...</think><answer>...</answer>``.

:func:`score_completions` calls several functions with checks and weights; :func:`combine_rewards` wraps them
into one TRL-style function.

Example:
    >>> from lightning_reasonattn.rewards import countdown_reward, format_reward, score_completions
    >>> completions = ["<think>44+19=63</think><answer>44 + 19 + 35</answer>", "<answer>44 * 19</answer>"]
    >>> total, parts = score_completions(
    ...     [countdown_reward, format_reward], [1.0, 0.5], ["p", "p"], completions,
    ...     {"numbers": [[44, 19, 35]] * 2, "target": [98, 98]},
    ... )
    >>> total.tolist(), parts["countdown_reward"].tolist()
    ([1.5, 0.0], [1.0, 0.0])
"""

from __future__ import annotations

import functools
import math
import numbers as _numbers
import re
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import torch

from .tasks.arithmetic import ArithmeticParseError, parse_arithmetic

RewardFunc = Callable[..., Sequence[float]]
"""``fn(prompts, completions, **columns) -> list[float]``."""

MAX_SCAN_CHARS = 10_000
"""Only this many trailing characters of a completion are searched for its answer."""
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


class RewardError(RuntimeError):
    """A reward function failed; the message names the function, the prompt index and the fix."""


# --------------------------------------------------------------------------------------------- plumbing


def completion_text(completion: Any) -> str:
    """The text of one completion, plain or in TRL's conversational format.

    Args:
        completion: a string; a list of ``{"role", "content"}`` messages (their contents are joined with
            newlines; a content may itself be a list of ``{"type": "text", "text": ...}`` parts); a single
            message dict; or ``None`` (an empty completion).

    Returns:
        The text, ``""`` for ``None``.

    Raises:
        TypeError: any other type.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        return "\n".join(_content_text(m.get("content") if isinstance(m, Mapping) else m) for m in completion)
    raise TypeError(
        f"A completion must be a string or a list of {{'role', 'content'}} messages, got {type(completion).__name__}:"
        f" {completion!r:.80}."
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal parts: keep the text ones
        return "".join(p.get("text") or "" for p in content if isinstance(p, Mapping))
    raise TypeError(f"A message content must be a string or a list of parts, got {type(content).__name__}.")


def reward_name(fn: Callable) -> str:
    """The name under which a reward function's values are reported.

    Args:
        fn: a reward function; a ``functools.partial`` reports the name of the function it wraps.

    Returns:
        ``fn.__name__``, else the name of its type (for callable objects).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", None) or type(fn).__name__


def _check_funcs(funcs: Sequence[Callable] | Callable, weights: Sequence[float] | None) -> tuple[list, list]:
    funcs = [funcs] if callable(funcs) else list(funcs)
    if not funcs:
        raise ValueError("No reward function given: pass at least one, e.g. [countdown_reward].")
    for fn in funcs:
        if not callable(fn):
            raise TypeError(f"Reward function {fn!r} is not callable: pass functions fn(prompts, completions, **kw).")
    weights = [1.0] * len(funcs) if weights is None else list(weights)
    if len(weights) != len(funcs):
        raise ValueError(f"Got {len(weights)} weights for {len(funcs)} reward functions: pass one weight each.")
    for fn, w in zip(funcs, weights, strict=True):
        if not isinstance(w, _numbers.Real) or not math.isfinite(w):
            raise ValueError(f"Weight {w!r} of reward function {reward_name(fn)!r} is not a finite number.")
    return funcs, [float(w) for w in weights]


def _unique_names(funcs: Sequence[Callable]) -> list[str]:
    names: list[str] = []
    for fn in funcs:
        name, k = reward_name(fn), 1
        while name in names:
            name, k = f"{reward_name(fn)}_{k}", k + 1
        names.append(name)
    return names


def _row(columns: Mapping[str, Any], i: int) -> dict[str, Any]:
    return {k: v[i : i + 1] if isinstance(v, (list, tuple)) else v for k, v in columns.items()}


def _short(value: Any) -> str:
    text = completion_text(value) if isinstance(value, (str, list, tuple)) else repr(value)
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _call_checked(fn: Callable, name: str, prompts: list, completions: list, columns: dict) -> torch.Tensor:
    n = len(completions)
    try:
        values = fn(prompts=prompts, completions=completions, **columns)
    except Exception as err:
        where = "(no single prompt reproduces it)"
        for i in range(n):  # find the first prompt index that fails on its own
            try:
                fn(prompts=prompts[i : i + 1], completions=completions[i : i + 1], **_row(columns, i))
            except Exception:
                where = f"at prompt index {i} (prompt {_short(prompts[i])})"
                break
        raise RewardError(
            f"Reward function {name!r} raised {type(err).__name__}: {err} {where}. Fix it so that it returns a"
            " float for every completion (e.g. 0.0 when the answer cannot be parsed)."
        ) from err
    if isinstance(values, torch.Tensor):
        values = values.detach().reshape(-1).tolist() if values.dim() <= 1 else values
    elif hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()  # numpy arrays
    if not isinstance(values, (list, tuple)):
        raise RewardError(
            f"Reward function {name!r} returned {type(values).__name__}, not a list: return one float per"
            f" completion ({n} here)."
        )
    if len(values) != n:
        raise RewardError(
            f"Reward function {name!r} returned {len(values)} values for {n} completions (first wrong prompt"
            f" index {min(len(values), n)}): return exactly one float per completion."
        )
    for i, v in enumerate(values):
        if not isinstance(v, _numbers.Real) or not math.isfinite(v):
            raise RewardError(
                f"Reward function {name!r} returned {v!r} at prompt index {i} (prompt {_short(prompts[i])}):"
                " rewards must be finite numbers; return 0.0 for a completion that cannot be scored."
            )
    return torch.tensor([float(v) for v in values], dtype=torch.float32)


def score_completions(
    funcs: Sequence[RewardFunc] | RewardFunc,
    weights: Sequence[float] | None,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Call every reward function on a batch, check what it returns, and weight the results.

    Args:
        funcs: reward functions ``fn(prompts, completions, **columns) -> list[float]``.
        weights: one finite weight per function; ``None`` weights each by 1.
        prompts: ``[n]`` prompts, ``prompts[i]`` being the prompt of ``completions[i]``.
        completions: ``[n]`` completions (strings or lists of messages).
        columns: dataset columns passed to every function as keywords, each a list of ``n`` values (other
            values, e.g. a trainer state, are passed as they are).

    Returns:
        ``(total, per_function)``: ``total`` is the ``[n]`` float32 weighted sum; ``per_function`` maps each
        function's name (made unique with ``_1``, ``_2`` suffixes) to its unweighted ``[n]`` rewards.

    Raises:
        RewardError: a function raised (the message names the first prompt index that fails alone), returned
            the wrong number of values, or a value that is not a finite number (NaN, inf, None, a string).
        ValueError: mismatched lengths of ``prompts``, ``completions``, a column or ``weights``.
    """
    funcs, weights = _check_funcs(funcs, weights)
    prompts, completions, columns = list(prompts), list(completions), dict(columns or {})
    n = len(completions)
    if len(prompts) != n:
        raise ValueError(f"Got {len(prompts)} prompts for {n} completions: repeat each prompt once per completion.")
    for key, value in columns.items():
        if key in ("prompts", "completions"):
            raise ValueError(f"Column {key!r} clashes with the reward function argument of that name: rename it.")
        if isinstance(value, (list, tuple)) and len(value) != n:
            raise ValueError(f"Column {key!r} has {len(value)} values for {n} completions: give one per completion.")
    per_function: dict[str, torch.Tensor] = {}
    total = torch.zeros(n, dtype=torch.float32)
    for name, fn, weight in zip(_unique_names(funcs), funcs, weights, strict=True):
        per_function[name] = _call_checked(fn, name, prompts, completions, columns)
        total += weight * per_function[name]
    return total, per_function


def combine_rewards(funcs: Sequence[RewardFunc], weights: Sequence[float] | None = None) -> RewardFunc:
    """One TRL-style reward function: the weighted sum of ``funcs``, checked as in :func:`score_completions`.

    Args:
        funcs: reward functions.
        weights: one finite weight per function; ``None`` weights each by 1.

    Returns:
        ``combined_reward(prompts, completions, **columns) -> list[float]``, with attributes ``reward_funcs``
        and ``reward_weights``.

    Raises:
        ValueError, TypeError: no functions, a non-callable, or weights of the wrong length or not finite.

    Example:
        >>> from lightning_reasonattn.rewards import combine_rewards, format_reward, numeric_answer_reward
        >>> reward = combine_rewards([numeric_answer_reward, format_reward], [1.0, 0.5])
        >>> reward(prompts=["2+2?"], completions=["<think>easy</think><answer>4</answer>"], answer=["4"])
        [1.5]
    """
    funcs, weights = _check_funcs(funcs, weights)

    def combined_reward(prompts, completions, **columns) -> list[float]:
        total, _ = score_completions(funcs, weights, prompts, completions, columns)
        return total.tolist()

    combined_reward.reward_funcs = funcs
    combined_reward.reward_weights = weights
    return combined_reward


def _per_completion(name: str, column: str, values: Any, n: int) -> list:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = f"{len(values)} values" if isinstance(values, (list, tuple)) else repr(values)[:60]
        raise ValueError(f"{name}: column {column!r} must hold one value per completion ({n}), got {got}.")
    return list(values)


# ------------------------------------------------------------------------------------------ countdown


def extract_answer_block(text: str) -> str | None:
    """The content of the last complete ``<answer>...</answer>`` in the last :data:`MAX_SCAN_CHARS` characters.

    Args:
        text: a completion's text.

    Returns:
        The content (not stripped), or ``None`` if there is no complete block.
    """
    tail = text[-MAX_SCAN_CHARS:]
    close = tail.rfind(_ANSWER_CLOSE)
    start = tail.rfind(_ANSWER_OPEN, 0, close) if close != -1 else -1
    return None if start == -1 else tail[start + len(_ANSWER_OPEN) : close]


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
        expression: untrusted arithmetic, parsed by :func:`parse_arithmetic`.
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


def _countdown_target(value: Any) -> Fraction:
    try:
        if isinstance(value, bool) or not isinstance(value, (_numbers.Rational, str, float)):
            raise TypeError
        return Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        message = f"countdown_reward: target {value!r} is not a number; the column must hold integers."
        raise ValueError(message) from None


def countdown_reward(prompts, completions, numbers, target, format_score: float = 0.0, **kwargs) -> list[float]:
    """Countdown (TinyZero): 1.0 when the final equation uses every given number once and equals the target.

    The equation is found by :func:`extract_countdown_expression` (the last ``<answer>`` block, else the last
    line) and parsed by :func:`parse_arithmetic`; it is never evaluated as code. Exact rational arithmetic:
    ``100 / 3 * 3`` equals ``100``.

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
        ValueError: a column without one value per completion, or a target that is not a number.

    Example:
        >>> countdown_reward(None, ["<answer>(93 - 43) + 1</answer>", "93 - 43 = 50"], [[93, 43, 1]] * 2, [51, 51])
        [1.0, 0.0]
    """
    n = len(completions)
    numbers = _per_completion("countdown_reward", "numbers", numbers, n)
    targets = [_countdown_target(t) for t in _per_completion("countdown_reward", "target", target, n)]
    rewards = []
    for completion, nums, goal in zip(completions, numbers, targets, strict=True):
        text = completion_text(completion)
        expression = extract_countdown_expression(text)
        if expression is not None and countdown_equation_correct(expression, nums, goal):
            rewards.append(1.0)
        else:
            rewards.append(float(format_score) if extract_answer_block(text) is not None else 0.0)
    return rewards


# ------------------------------------------------------------------------------------ numeric answers

_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:/[0-9]+)?")
_FRAC = re.compile(r"\\[dt]?frac\{(-?[0-9]+)\}\{(-?[0-9]+)\}")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start == -1:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def extract_numeric_answer(text: str) -> str | None:
    """The text that holds the final answer of a math completion or of a reference answer.

    Looks in the last :data:`MAX_SCAN_CHARS` characters, inside the last ``<answer>`` block if any, for the
    last ``\\boxed{...}``, else the text after the last ``####`` (GSM8K), else the whole text.

    Args:
        text: a completion's text, or a reference answer such as ``"... #### 1,234"``.

    Returns:
        The answer text, or ``None`` if it is empty.
    """
    segment = extract_answer_block(text)
    segment = text[-MAX_SCAN_CHARS:] if segment is None else segment
    boxed = _last_boxed(segment)
    if boxed is not None:
        segment = boxed
    elif "####" in segment:
        segment = segment.rsplit("####", 1)[1]
    return segment if segment.strip() else None


def parse_number(text: str, strict: bool = False) -> Fraction | None:
    """The last number in ``text``, exactly: ``"$1,234.50"`` -> 1234.5, ``"\\frac{3}{4}"``, ``"3/4"`` -> 3/4.

    Args:
        text: answer text; ``$``, ``\\!`` and thousands separators are ignored; only ASCII digits count.
        strict: the whole text (less whitespace and a final period) must be the number, so that LaTeX such as
            ``\\sqrt{2}`` reads as no number rather than as 2.

    Returns:
        The number as a Fraction, or ``None`` if there is none (or a zero denominator).

    Example:
        >>> parse_number("The total is $1,234.50."), parse_number("\\\\sqrt{2}", strict=True)
        (Fraction(2469, 2), None)
    """
    text = _THOUSANDS.sub("", text.replace("\\$", "").replace("$", "").replace("\\!", ""))
    if strict:
        text = text.strip().rstrip(".").strip()
        if not (_FRAC.fullmatch(text) or _NUMBER.fullmatch(text)):
            return None
    fracs, plain = list(_FRAC.finditer(text)), list(_NUMBER.finditer(text))
    if fracs and (not plain or fracs[-1].end() >= plain[-1].end()):
        num, den = int(fracs[-1].group(1)), int(fracs[-1].group(2))
        return Fraction(num, den) if den else None
    if not plain:
        return None
    num, _, den = plain[-1].group(0).partition("/")
    if den and not int(den):
        return None
    return Fraction(num) / (Fraction(den) if den else 1)


@functools.lru_cache(maxsize=1)
def _math_verify():
    try:
        import math_verify
    except ImportError:
        return None
    return math_verify


def _latex_env(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text.strip()}$"


def _math_verify_equal(gold: str, completion: str) -> bool:
    module = _math_verify()
    block = extract_answer_block(completion)
    prediction = _latex_env(block) if block is not None else completion[-MAX_SCAN_CHARS:]
    try:
        return bool(module.verify(module.parse(_latex_env(gold)), module.parse(prediction)))
    except Exception:  # math-verify's own timeouts and parse failures count as "not equal"
        return False


def _reference(value: Any) -> tuple[str, Fraction | None]:
    if isinstance(value, bool) or not isinstance(value, (_numbers.Real, str)):
        raise ValueError(f"numeric_answer_reward: answer {value!r} is neither a number nor a string.")
    if isinstance(value, _numbers.Real):
        if not math.isfinite(value):
            raise ValueError(f"numeric_answer_reward: answer {value!r} is not finite; fix the answer column.")
        return str(value), Fraction(value)
    text = extract_numeric_answer(value) or value
    return text, parse_number(text, strict=True)


def numeric_answer_reward(
    prompts,
    completions,
    answer,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    use_math_verify: bool | None = None,
    **kwargs,
) -> list[float]:
    """1.0 when the completion's final number equals the reference ``answer``, else 0.0.

    The reference is a number, or a string read by :func:`extract_numeric_answer` (``\\boxed{}``, GSM8K's
    ``####``) that must then be exactly one number (``"1,234"``, ``"-3"``, ``"0.75"``, ``"3/4"``,
    ``"\\frac{3}{4}"``). The completion's answer is the last number of its ``<answer>`` block, else of its
    last ``\\boxed{}``, else after its last ``####``, else of its text. When that built-in check says
    "different", or the reference is not a plain number (e.g. ``\\sqrt{2}``), and ``math_verify`` is
    installed, math-verify gets the final say.

    Args:
        prompts: the prompts (unused).
        completions: ``[n]`` completions, strings or lists of messages.
        answer: ``[n]`` reference answers: numbers, or strings like ``"42"``, ``"... #### 1,234"``.
        rel_tol: relative tolerance of the comparison.
        abs_tol: absolute tolerance of the comparison.
        use_math_verify: ``None`` uses math-verify when importable; ``False`` never; ``True`` requires it.
        **kwargs: other columns, ignored.

    Returns:
        ``[n]`` rewards in ``{0.0, 1.0}``.

    Raises:
        ValueError: ``answer`` without one value per completion, or a reference that is not a plain number
            while math-verify is not used.
        ImportError: ``use_math_verify=True`` without the package (``pip install math-verify``).

    Example:
        >>> numeric_answer_reward(None, ["so 40 + 2 = \\\\boxed{42}", "I think 41"], ["#### 42", 42])
        [1.0, 0.0]
    """
    if use_math_verify and _math_verify() is None:
        raise ImportError("numeric_answer_reward(use_math_verify=True) needs math-verify: pip install math-verify")
    verify = use_math_verify is not False and _math_verify() is not None
    n = len(completions)
    references = _per_completion("numeric_answer_reward", "answer", answer, n)
    rewards = []
    for completion, reference in zip(completions, references, strict=True):
        gold_text, gold = _reference(reference)
        if gold is None and not verify:
            raise ValueError(
                f"numeric_answer_reward: reference answer {reference!r} is not a plain number; fix the answer"
                " column, or install math-verify (pip install math-verify) to compare LaTeX answers."
            )
        text = completion_text(completion)
        predicted_text = extract_numeric_answer(text)
        predicted = parse_number(predicted_text) if predicted_text is not None else None
        ok = gold is not None and predicted is not None
        ok = ok and abs(predicted - gold) <= max(Fraction(abs_tol), Fraction(rel_tol) * abs(gold))
        if not ok and verify:
            ok = _math_verify_equal(gold_text, text)
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

    See :func:`matches_think_answer_format` for the exact rule.

    Args:
        prompts: the prompts (unused).
        completions: ``[n]`` completions, strings or lists of messages.
        **kwargs: dataset columns, ignored.

    Returns:
        ``[n]`` rewards in ``{0.0, 1.0}``.

    Example:
        >>> format_reward(None, ["<think>a</think>\\n<answer>1</answer>", "<answer>1</answer>"])
        [1.0, 0.0]
    """
    return [1.0 if matches_think_answer_format(completion_text(c)) else 0.0 for c in completions]
