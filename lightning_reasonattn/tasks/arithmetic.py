"""Arithmetic expressions: a safe parser for untrusted ones, and multi-digit problems generated offline.

[`parse_arithmetic`][parse_arithmetic] evaluates an expression written by a model (a Countdown answer) exactly, with a
small recursive-descent parser over ``+ - * /`` and parentheses; nothing is ever passed to ``eval``. Its limits
(``MAX_EXPRESSION_CHARS``, ``MAX_DEPTH``, ``MAX_OPERANDS``, ``MAX_DIGITS``) bound the time
and memory of every call.

A generated problem is an expression such as ``12 + 34 * 56`` over ``+ - *`` (usual precedence, no
parentheses); its answer is the exact integer value, scored by
[`lightning_reasonattn.rewards.numeric_answer_reward`][lightning_reasonattn.rewards.numeric_answer_reward].

Difficulty presets ([`DIFFICULTY`][DIFFICULTY]), each ``(operands, min digits, max digits, operators)``; explicit
arguments override them:

- 0: 2 one-digit operands, ``+`` (``7 + 5``; with ``style="short"`` SmolLM2-135M-Instruct starts near 30%)
- 1: 2 operands of 1-2 digits, ``+`` (``7 + 45``)
- 2: 2 operands of 2-3 digits, ``+ -`` (``345 - 78``)
- 3: 3 operands of 2 digits, ``+ - *`` (``12 + 34 * 56``), the default
- 4: 3 operands of 2-3 digits, ``+ - *`` (``123 - 45 * 678``)
- 5: 4 operands of 2-3 digits, ``+ - *`` (``12 * 345 + 67 - 890``)

Pick the level at which your model's starting reward is between about 10% and 60%, so that learning can
show: measure it on a few dozen prompts before a run (near 0% GRPO gets no signal, near 100% there is
nothing left to learn).

A record is ``{"prompt": str | list[dict], "answer": int, "expression": str}``.

Example:
    >>> from lightning_reasonattn.tasks.arithmetic import generate_arithmetic, parse_arithmetic
    >>> record = generate_arithmetic(1, seed=0, difficulty=3)[0]
    >>> parse_arithmetic(record["expression"])[0] == record["answer"]
    True
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

from .datasets import r1_messages, r1_prompt
from .splits import DEFAULT_DIFFICULTY, disjoint_splits

MAX_EXPRESSION_CHARS = 1_000
"""Longer arithmetic expressions are rejected before parsing."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses and unary signs that [`parse_arithmetic`][parse_arithmetic] accepts."""
MAX_OPERANDS = 16
"""Most number literals in one expression."""
MAX_DIGITS = 12
"""Most digits in one number literal."""

_OPERATOR_ALIASES = {"+": "+", "-": "-", "*": "*", "/": "/", "(": "(", ")": ")", "×": "*", "÷": "/", "−": "-"}


class ArithmeticParseError(ValueError):
    """An expression is not plain arithmetic over + - * / and parentheses; the message says why."""


def _tokenize(expr: str) -> list:
    tokens: list = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in " \t\r\n":
            i += 1
        elif "0" <= c <= "9":  # ASCII digits only: str.isdigit() would accept '٣' and '３'
            j = i
            while j < n and "0" <= expr[j] <= "9":
                j += 1
            if j - i > MAX_DIGITS:
                raise ArithmeticParseError(f"number literal longer than {MAX_DIGITS} digits")
            tokens.append(int(expr[i:j]))
            i = j
        elif c in _OPERATOR_ALIASES:
            op = _OPERATOR_ALIASES[c]
            if op == "*" and tokens and tokens[-1] == "*":
                raise ArithmeticParseError("exponentiation '**' is not allowed")
            tokens.append(op)
            i += 1
        else:
            raise ArithmeticParseError(f"character {c!r} at position {i} is not a digit, operator or parenthesis")
    return tokens


class _Parser:
    """Recursive descent over ``expr := term (+|- term)*; term := factor (*|/ factor)*;
    factor := (+|-) factor | NUMBER | ( expr )`` with exact Fraction arithmetic."""

    def __init__(self, tokens: list):
        self.tokens, self.pos, self.operands = tokens, 0, []

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            rhs = self.term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.tokens[self.pos]
            self.pos += 1
            rhs = self.factor(depth)
            if op == "/" and rhs == 0:
                raise ArithmeticParseError("division by zero")
            value = value * rhs if op == "*" else value / rhs
        return value

    def factor(self, depth: int) -> Fraction:
        if depth >= MAX_DEPTH:
            raise ArithmeticParseError(f"nesting deeper than {MAX_DEPTH}")
        token = self.peek()
        self.pos += 1
        if isinstance(token, int):
            self.operands.append(token)
            return Fraction(token)
        if token in ("+", "-"):
            value = self.factor(depth + 1)
            return -value if token == "-" else value
        if token == "(":
            value = self.expr(depth + 1)
            if self.peek() != ")":
                raise ArithmeticParseError("unbalanced parenthesis")
            self.pos += 1
            return value
        raise ArithmeticParseError(f"expected a number or '(' but found {token!r}")


def parse_arithmetic(expr: str) -> tuple[Fraction, list[int]]:
    """Evaluate an untrusted arithmetic expression exactly, without ``eval``.

    Accepts non-negative integer literals of ASCII digits, ``+ - * /`` (also ``×``, ``÷`` and the minus sign
    ``−``), unary signs, parentheses and whitespace. Bounded by construction: at most
    ``MAX_EXPRESSION_CHARS`` characters, ``MAX_DEPTH`` nesting, ``MAX_OPERANDS`` literals of at
    most ``MAX_DIGITS`` digits, so the exact result stays small.

    Args:
        expr: the expression, e.g. ``"(93 - 43) + 1"``.

    Returns:
        ``(value, operands)``: the exact value and the integer literals in order of appearance.

    Raises:
        ArithmeticParseError: anything else: other characters (letters, ``.``, ``^``, unicode digits),
            ``**``, a syntax error, a division by zero, or a limit exceeded.

    Example:
        >>> parse_arithmetic("(93 - 43) + 1")
        (Fraction(51, 1), [93, 43, 1])
    """
    if not isinstance(expr, str):
        raise ArithmeticParseError(f"expected a string, got {type(expr).__name__}")
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise ArithmeticParseError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    tokens = _tokenize(expr)
    if sum(isinstance(t, int) for t in tokens) > MAX_OPERANDS:
        raise ArithmeticParseError(f"more than {MAX_OPERANDS} numbers")
    if not tokens:
        raise ArithmeticParseError("empty expression")
    parser = _Parser(tokens)
    value = parser.expr(0)
    if parser.pos != len(tokens):
        raise ArithmeticParseError(f"unexpected {tokens[parser.pos]!r} after a complete expression")
    return value, parser.operands


QUESTION = (
    "What is {expression}? Show your work in <think> </think> tags. And return the final number in "
    "<answer> </answer> tags, for example <answer> 42 </answer>."
)
"""The arithmetic question, formatted with the expression."""

DIFFICULTY: dict[int, tuple[int, int, int, str]] = {
    0: (2, 1, 1, "+"),
    1: (2, 1, 2, "+"),
    2: (2, 2, 3, "+-"),
    3: (3, 2, 2, "+-*"),
    4: (3, 2, 3, "+-*"),
    5: (4, 2, 3, "+-*"),
}
"""Presets: level -> (operands, min digits, max digits, operators)."""


SHORT_QUESTION = "What is {expression}? Reply with the number only."
STYLES = ("r1", "short")


def arithmetic_prompt(expression: str, chat: bool = False, style: str = "r1") -> str | list[dict[str, str]]:
    """The prompt of one problem.

    Args:
        expression: e.g. ``"12 + 34 * 56"``.
        chat: return chat messages for tokenizers with a chat template.
        style: ``"r1"``: R1-style reasoning in ``<think>`` tags and the answer in ``<answer>`` tags (plain text
            ends in ``<think>``); ``"short"``: just the question, answered with a number (for small models).

    Returns:
        The prompt.
    """
    if style not in STYLES:
        raise ValueError(f"style={style!r} is unknown: use 'r1' or 'short'.")
    if style == "short":
        question = SHORT_QUESTION.format(expression=expression)
        return [{"role": "user", "content": question}] if chat else f"Question: {question}\nAnswer:"
    question = QUESTION.format(expression=expression)
    return r1_messages(question) if chat else r1_prompt(question)


def evaluate_sum_of_products(operands: list[int], operators: list[str]) -> int:
    """The value of ``operands[0] operators[0] operands[1] ...`` with ``*`` before ``+`` and ``-``.

    Args:
        operands: ``k`` integers.
        operators: ``k - 1`` of ``"+"``, ``"-"``, ``"*"``.

    Returns:
        The exact integer.

    Example:
        >>> evaluate_sum_of_products([12, 34, 56], ["+", "*"])
        1916
    """
    total, sign, product = 0, 1, operands[0]
    for op, x in zip(operators, operands[1:], strict=True):
        if op == "*":
            product *= x
        else:
            total += sign * product
            sign, product = (1 if op == "+" else -1), x
    return total + sign * product


def generate_arithmetic(
    n: int,
    seed: int = 0,
    *,
    difficulty: int = DEFAULT_DIFFICULTY,
    num_operands: int | None = None,
    digits: tuple[int, int] | None = None,
    operators: str | None = None,
    chat: bool = False,
    style: str = "r1",
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """``n`` distinct arithmetic problems, the same for the same arguments.

    Args:
        n: how many problems.
        seed: seed of a private ``random.Random``.
        difficulty: a preset of [`DIFFICULTY`][DIFFICULTY] (1 easiest to 5).
        num_operands: overrides the preset's count of operands (at least 2).
        digits: overrides the preset's ``(min, max)`` digits per operand (at least 1).
        operators: overrides the preset's operators, a string drawn from ``"+-*"``.
        chat: prompts as chat messages instead of plain text.
        style: prompt style, see [`arithmetic_prompt`][arithmetic_prompt].
        exclude: expressions never to generate, e.g. a test split's.

    Returns:
        Records ``{"prompt", "answer", "expression"}``.

    Raises:
        ValueError: an unknown difficulty or a bad override.
        RuntimeError: the settings hold fewer than ``n`` distinct problems.
    """
    if difficulty not in DIFFICULTY:
        raise ValueError(f"difficulty={difficulty!r}: choose one of {sorted(DIFFICULTY)}.")
    k, low, high, ops = DIFFICULTY[difficulty]
    k = k if num_operands is None else num_operands
    low, high = (low, high) if digits is None else digits
    ops = ops if operators is None else operators
    if not (isinstance(k, int) and k >= 2):
        raise ValueError(f"num_operands={num_operands!r}: pass an integer >= 2.")
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise ValueError(f"digits={digits!r}: pass (min, max) integers with 1 <= min <= max.")
    if not ops or set(ops) - set("+-*"):
        raise ValueError(f"operators={operators!r}: pass a non-empty string of '+', '-', '*'.")
    rng = random.Random(seed)
    seen, records = set(exclude), []
    for _ in range(100 * n + 1000):
        if len(records) == n:
            break
        operands = []
        for _ in range(k):
            d = rng.randint(low, high)
            operands.append(rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1))
        chosen = [rng.choice(ops) for _ in range(k - 1)]
        expression = " ".join([str(operands[0])] + [f"{op} {x}" for op, x in zip(chosen, operands[1:], strict=True)])
        if expression in seen:
            continue
        seen.add(expression)
        answer = evaluate_sum_of_products(operands, chosen)
        records.append(
            {"prompt": arithmetic_prompt(expression, chat, style), "answer": answer, "expression": expression}
        )
    if len(records) < n:
        raise RuntimeError(f"Found only {len(records)} of {n} distinct problems: raise the digits or ask for fewer.")
    return records


def arithmetic_splits(
    n_train: int, n_test: int, seed: int = 0, **kwargs: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and test arithmetic problems that share no expression; the test split is drawn first.

    Args:
        n_train: problems in the train split.
        n_test: problems in the test split.
        seed: the seed.
        **kwargs: passed to [`generate_arithmetic`][generate_arithmetic].

    Returns:
        ``(train, test)`` records.
    """
    return disjoint_splits(generate_arithmetic, lambda r: r["expression"], n_train, n_test, seed, **kwargs)
