"""Word problems with small numbers: a count that changes over a few steps, asked for at the end.

A problem tells a story in sentences, one per step, and asks for the final count::

    Tom has 3 apples. Then he buys 4 more. Then he gives 2 to Anna. How many apples does Tom have now?

Each step adds (``buys``, ``finds``, ``gets ... from``) or takes away (``gives ... to``, ``loses``,
``gives away``) a number in ``1..max_number``, and the count never goes below zero, so the answer (here 5)
is a non-negative integer, scored by
[`numeric_answer_reward`][lightning_reasonattn.rewards.numeric_answer_reward]: the last number of the
completion (or of its ``<answer>`` block, with ``style="r1"``). The ``plain`` style asks the question alone,
so the model reasons in its own words and ends with a number.

Starting accuracy and completion length on the embedded SmolLM2-135M-Instruct (4-bit NF4 base, chat
template, ``benchmarks/measure_task.py``) are in docs/train.md: at ``difficulty=1``, ``style="plain"``,
temperature 0.5 and up to 160 new tokens, about 15% correct with completions of ~110 tokens.

A record is ``{"prompt": str | list[dict], "answer": int, "question": str, "expression": str}``; the
expression (``"3 + 4 - 2"``) is the story's arithmetic, a record's identity is its question.

Example:
    >>> from lightning_reasonattn.tasks import generate_word_problems
    >>> record = generate_word_problems(1, seed=0, steps=2)[0]
    >>> sorted(record)
    ['answer', 'expression', 'prompt', 'question']
    >>> from lightning_reasonattn.tasks.arithmetic import parse_arithmetic
    >>> parse_arithmetic(record["expression"])[0] == record["answer"]
    True
"""

from __future__ import annotations

import random
from typing import Any

from .datasets import r1_messages, r1_prompt
from .splits import DEFAULT_DIFFICULTY, disjoint_splits

NAMES = ("Tom", "Anna", "Ben", "Lucy", "Sam", "Mia", "Leo", "Emma", "Jack", "Lily", "Max", "Zoe")
"""First names of the people in the stories."""
PRONOUN = {
    "Tom": "he", "Ben": "he", "Sam": "he", "Leo": "he", "Jack": "he", "Max": "he",
    "Anna": "she", "Lucy": "she", "Mia": "she", "Emma": "she", "Lily": "she", "Zoe": "she",
}  # fmt: skip
ITEMS = ("apples", "pencils", "marbles", "stickers", "cookies", "books", "cards", "shells", "coins", "stamps")
"""What the people count."""

GAIN = ("buys {n} more", "finds {n} more", "gets {n} more from {friend}")
"""Sentences that add ``n`` to the count."""
LOSS = ("gives {n} to {friend}", "loses {n}", "gives {n} away")
"""Sentences that take ``n`` away from the count."""

R1_INSTRUCTION = (
    " Show your work in <think> </think> tags. And return the final number in <answer> </answer> tags, for "
    "example <answer> 42 </answer>."
)
"""What the ``r1`` style asks for after the question."""
STYLES = ("plain", "r1")


DIFFICULTY: dict[int, tuple[int, int, str]] = {
    0: (1, 5, "+"),
    1: (1, 9, "+-"),
    2: (2, 9, "+-"),
    3: (3, 9, "+-"),
    4: (3, 20, "+-"),
    5: (4, 50, "+-"),
}
"""Presets: level -> (steps, largest number, operations)."""


def word_problem_prompt(question: str, chat: bool = False, style: str = "plain") -> str | list[dict[str, str]]:
    """The prompt of one problem.

    Args:
        question: the story and its question.
        chat: return chat messages for tokenizers with a chat template.
        style: ``"plain"``: the question alone, as the user message (plain text: ``Question: ...`` and
            ``Answer:``); ``"r1"``: R1-style ``<think>`` / ``<answer>`` tags with the R1 system message (plain
            text ends in ``<think>``).

    Returns:
        The prompt.

    Raises:
        ValueError: an unknown style.
    """
    if style not in STYLES:
        raise ValueError(f"style={style!r} is unknown: use 'plain' or 'r1'.")
    if style == "r1":
        text = question + R1_INSTRUCTION
        return r1_messages(text) if chat else r1_prompt(text)
    return [{"role": "user", "content": question}] if chat else f"Question: {question}\nAnswer:"


def _story(rng: random.Random, steps: int, max_number: int, operations: str) -> tuple[str, str, int]:
    """``(question, expression, answer)`` of one random story."""
    name = rng.choice(NAMES)
    friend = rng.choice([f for f in NAMES if f != name])
    item = rng.choice(ITEMS)
    count = rng.randint(2, max_number)
    sentences, expression = [f"{name} has {count} {item}."], str(count)
    for _ in range(steps):
        gain = operations == "+" or count == 0 or rng.random() < 0.5
        n = rng.randint(1, max_number) if gain else rng.randint(1, min(count, max_number))
        verb = rng.choice(GAIN if gain else LOSS).format(n=n, friend=friend)
        sentences.append(f"Then {PRONOUN[name]} {verb}.")
        expression += f" {'+' if gain else '-'} {n}"
        count += n if gain else -n
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), expression, count


def generate_word_problems(
    n: int,
    seed: int = 0,
    *,
    difficulty: int = DEFAULT_DIFFICULTY,
    steps: int | None = None,
    max_number: int | None = None,
    operations: str | None = None,
    chat: bool = False,
    style: str = "plain",
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """``n`` distinct word problems, the same for the same arguments.

    Args:
        n: how many problems.
        seed: seed of a private ``random.Random``.
        difficulty: a preset of [`DIFFICULTY`][lightning_reasonattn.tasks.word_problems.DIFFICULTY] (0 easiest to 5).
        steps: overrides the preset's changes to the count after the start (1 = one-step problems).
        max_number: overrides the preset's largest starting count and change (at least 2).
        operations: overrides the preset's kinds of change: ``"+"`` (gains only) or ``"+-"``.
        chat: prompts as chat messages instead of plain text.
        style: prompt style, see [`word_problem_prompt`][lightning_reasonattn.tasks.word_problems.word_problem_prompt].
        exclude: questions never to generate, e.g. a test split's.

    Returns:
        Records ``{"prompt", "answer", "question", "expression"}``.

    Raises:
        ValueError: an unknown difficulty or style, or a bad override.
        RuntimeError: the settings hold fewer than ``n`` distinct problems.
    """
    if difficulty not in DIFFICULTY:
        raise ValueError(f"difficulty={difficulty!r}: choose one of {sorted(DIFFICULTY)}.")
    preset_steps, preset_max, preset_ops = DIFFICULTY[difficulty]
    steps = preset_steps if steps is None else steps
    max_number = preset_max if max_number is None else max_number
    operations = preset_ops if operations is None else operations
    if operations not in ("+", "+-"):
        raise ValueError(f"operations={operations!r}: pass '+' (gains only) or '+-' (gains and losses).")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 10:
        raise ValueError(f"steps={steps!r}: pass an integer from 1 to 10.")
    if isinstance(max_number, bool) or not isinstance(max_number, int) or not 2 <= max_number <= 1000:
        raise ValueError(f"max_number={max_number!r}: pass an integer from 2 to 1000.")
    word_problem_prompt("", style=style)  # checks the style before any work
    rng = random.Random(seed)
    seen, records = set(exclude), []
    for _ in range(100 * n + 1000):
        if len(records) == n:
            break
        question, expression, answer = _story(rng, steps, max_number, operations)
        if question in seen:
            continue
        seen.add(question)
        records.append(
            {
                "prompt": word_problem_prompt(question, chat, style),
                "answer": answer,
                "question": question,
                "expression": expression,
            }
        )
    if len(records) < n:
        raise RuntimeError(
            f"Found only {len(records)} of {n} distinct word problems: raise steps or max_number, or ask for fewer."
        )
    return records


def worked_answer(expression: str) -> str:
    """The answer worked step by step, one sentence per change of the count, ending with the count.

    What a model trained from scratch learns to write after ``Answer:`` (``benchmarks/credit_from_scratch.py``,
    ``examples/watch_rhythm_emerge.py``); its last number is the answer the numeric reward reads.

    Args:
        expression: a record's ``expression``, e.g. ``"3 - 2 + 6"``.

    Example:
        >>> worked_answer("3 - 2 + 6")
        '3 - 2 = 1. 1 + 6 = 7. The answer is 7.'
    """
    parts = expression.split()
    count, steps = int(parts[0]), []
    for op, n in zip(parts[1::2], parts[2::2], strict=True):
        new = count + int(n) if op == "+" else count - int(n)
        steps.append(f"{count} {op} {n} = {new}.")
        count = new
    return " ".join(steps) + f" The answer is {count}."


def word_problem_splits(
    n_train: int, n_test: int, seed: int = 0, **kwargs: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and test word problems that share no question; the test split is drawn first.

    Args:
        n_train: problems in the train split.
        n_test: problems in the test split.
        seed: the seed.
        **kwargs: passed to [`generate_word_problems`][lightning_reasonattn.tasks.word_problems.generate_word_problems].

    Returns:
        ``(train, test)`` records.
    """
    return disjoint_splits(generate_word_problems, lambda r: r["question"], n_train, n_test, seed, **kwargs)
