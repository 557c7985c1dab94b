"""Countdown problems generated offline, in the TinyZero protocol.

A problem gives 3 or 4 numbers in 1..99 and a target; the answer is an equation over ``+ - * /`` and
parentheses that uses every number exactly once and equals the target (scored by
[`lightning_reasonattn.rewards.countdown_reward`][lightning_reasonattn.rewards.countdown_reward]). Every generated
target is reachable: it is drawn uniformly from the integers in ``target_range`` that an exhaustive search with exact
fractions reaches (about 5 ms per 4-number problem). The default ``target_range`` of 1..100 gives two-digit targets like
TinyZero's 3-to-4-number Countdown set; widen it (e.g. ``(1, 999)``) for harder problems.

A record is ``{"prompt": str | list[dict], "numbers": list[int], "target": int}``.

Example:
    >>> from lightning_reasonattn.tasks import countdown_splits
    >>> train, test = countdown_splits(8, 2, seed=0)
    >>> sorted(train[0])
    ['numbers', 'prompt', 'target']
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

from .datasets import r1_messages, r1_prompt
from .splits import disjoint_splits

QUESTION = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number must be used exactly once. Show your work in <think> </think> "
    "tags. And return the final equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)
"""The Countdown question, formatted with the list of numbers and the target."""

MAX_NUMBERS = 5
"""The exhaustive search grows fast with the count of numbers: 4 take milliseconds, 5 about a second."""


def countdown_prompt(numbers: Sequence[int], target: int, chat: bool = False) -> str | list[dict[str, str]]:
    """The prompt of one problem: R1-style plain text ending in ``<think>``, or chat messages.

    Args:
        numbers: the given numbers.
        target: the target.
        chat: return ``[system, user]`` messages for tokenizers with a chat template.

    Returns:
        The prompt.

    Example:
        >>> print(countdown_prompt([3, 5, 7], 22).splitlines()[-1])
        <think>
    """
    question = QUESTION.format(numbers=list(numbers), target=target)
    return r1_messages(question) if chat else r1_prompt(question)


def _combine(a: Fraction, b: Fraction) -> Iterable[Fraction]:
    yield from (a + b, a - b, b - a, a * b)
    if b:
        yield a / b
    if a:
        yield b / a


def reachable_values(numbers: Sequence[int]) -> set[Fraction]:
    """Every value of an expression over ``+ - * /`` that uses each of ``numbers`` exactly once.

    Dynamic programming over subsets: the values of a subset are the combinations of the values of its two
    parts, for every split in two.

    Args:
        numbers: 1 to ``MAX_NUMBERS`` integers.

    Returns:
        The exact values.

    Raises:
        ValueError: no numbers, or more than ``MAX_NUMBERS``.
    """
    if not 1 <= len(numbers) <= MAX_NUMBERS:
        raise ValueError(f"Got {len(numbers)} numbers: the search handles 1 to {MAX_NUMBERS}.")
    values = {1 << i: {Fraction(x)} for i, x in enumerate(numbers)}
    for mask in range(1, 1 << len(numbers)):
        if mask in values:
            continue
        out: set[Fraction] = set()
        part = (mask - 1) & mask
        while part:
            rest = mask ^ part
            if part < rest:  # each unordered split once
                for a in values[part]:
                    for b in values[rest]:
                        out.update(_combine(a, b))
            part = (part - 1) & mask
        values[mask] = out
    return values[(1 << len(numbers)) - 1]


def reachable_targets(numbers: Sequence[int], low: int = 1, high: int = 100) -> list[int]:
    """The integers in ``[low, high]`` that some expression over all of ``numbers`` equals, ascending.

    Args:
        numbers: the given numbers.
        low: the smallest target.
        high: the largest target.

    Returns:
        The reachable targets.

    Example:
        >>> reachable_targets([2, 3], 1, 10)
        [1, 5, 6]
    """
    return sorted(int(v) for v in reachable_values(numbers) if v.denominator == 1 and low <= v <= high)


def solve_countdown(numbers: Sequence[int], target: int) -> str | None:
    """One equation that uses every number once and equals ``target``, found by depth-first search.

    Args:
        numbers: the given numbers.
        target: the target.

    Returns:
        An expression such as ``"(44 + 19) + 35"``, or ``None`` if the target is unreachable.

    Example:
        >>> solve_countdown([44, 19, 35], 98)
        '(44 + 19) + 35'
    """
    goal = Fraction(target)

    def search(items: list[tuple[Fraction, str]]) -> str | None:
        if len(items) == 1:
            return items[0][1] if items[0][0] == goal else None
        for i, (a, ea) in enumerate(items):
            for j, (b, eb) in enumerate(items):
                if i == j:
                    continue
                rest = [item for k, item in enumerate(items) if k not in (i, j)]
                options = [(a - b, f"({ea} - {eb})")] + ([(a / b, f"({ea} / {eb})")] if b else [])
                if i < j:
                    options += [(a + b, f"({ea} + {eb})"), (a * b, f"({ea} * {eb})")]
                for value, text in options:
                    found = search([(value, text), *rest])
                    if found is not None:
                        return found
        return None

    found = search([(Fraction(x), str(x)) for x in numbers])
    return found[1:-1] if found is not None and len(numbers) > 1 else found


def _check_range(name: str, pair: tuple[int, int], smallest: int | None = None) -> None:
    ok = len(pair) == 2 and all(isinstance(x, int) for x in pair) and pair[0] <= pair[1]
    if not ok or (smallest is not None and pair[0] < smallest):
        floor = "" if smallest is None else f" and low >= {smallest}"
        raise ValueError(f"{name}={pair!r}: pass two integers (low, high) with low <= high{floor}.")


def countdown_key(record: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """The identity of a problem, the same for any order of its numbers.

    Args:
        record: a record with ``"numbers"`` and ``"target"``.

    Returns:
        ``(sorted numbers, target)``.
    """
    return tuple(sorted(record["numbers"])), int(record["target"])


def generate_countdown(
    n: int,
    seed: int = 0,
    *,
    num_numbers: tuple[int, int] = (3, 4),
    number_range: tuple[int, int] = (1, 99),
    target_range: tuple[int, int] = (1, 100),
    chat: bool = False,
    exclude: Iterable[tuple[tuple[int, ...], int]] = (),
) -> list[dict[str, Any]]:
    """``n`` distinct Countdown problems with reachable targets, the same for the same arguments.

    Each problem draws its count of numbers uniformly from ``num_numbers``, the numbers uniformly (with
    repetition) from ``number_range``, and the target uniformly from its reachable targets in
    ``target_range``; numbers without one are redrawn. Problems are distinct by [`countdown_key`][countdown_key].

    Args:
        n: how many problems.
        seed: seed of a private ``random.Random``; the global random state is untouched.
        num_numbers: the least and most numbers per problem (at most ``MAX_NUMBERS``).
        number_range: the smallest and largest given number.
        target_range: the smallest and largest target.
        chat: prompts as chat messages instead of plain text.
        exclude: problem keys (see [`countdown_key`][countdown_key]) never to generate, e.g. a test split's.

    Returns:
        Records ``{"prompt", "numbers", "target"}``.

    Raises:
        ValueError: bad ranges.
        RuntimeError: the ranges hold fewer than ``n`` distinct problems.
    """
    _check_range("num_numbers", num_numbers, 1)
    _check_range("number_range", number_range, 0)
    _check_range("target_range", target_range)
    if num_numbers[1] > MAX_NUMBERS:
        raise ValueError(f"num_numbers={num_numbers!r}: at most {MAX_NUMBERS} numbers per problem.")
    rng = random.Random(seed)
    seen = set(exclude)
    records: list[dict[str, Any]] = []
    for _ in range(100 * n + 1000):
        if len(records) == n:
            return records
        numbers = [rng.randint(*number_range) for _ in range(rng.randint(*num_numbers))]
        targets = reachable_targets(numbers, *target_range)
        if not targets:
            continue
        target = rng.choice(targets)
        key = (tuple(sorted(numbers)), target)
        if key in seen:
            continue
        seen.add(key)
        records.append({"prompt": countdown_prompt(numbers, target, chat), "numbers": numbers, "target": target})
    if len(records) == n:
        return records
    raise RuntimeError(
        f"Found only {len(records)} of {n} distinct Countdown problems with num_numbers={num_numbers}, "
        f"number_range={number_range}, target_range={target_range}: widen the ranges or ask for fewer."
    )


def countdown_splits(
    n_train: int, n_test: int, seed: int = 0, **kwargs: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and test Countdown problems that share no problem ([`countdown_key`][countdown_key]).

    The test split is drawn first from ``seed``, so it does not change when ``n_train`` does.

    Args:
        n_train: problems in the train split.
        n_test: problems in the test split.
        seed: the seed.
        **kwargs: passed to [`generate_countdown`][generate_countdown] (ranges, ``chat``).

    Returns:
        ``(train, test)`` records.
    """
    return disjoint_splits(generate_countdown, countdown_key, n_train, n_test, seed, **kwargs)
