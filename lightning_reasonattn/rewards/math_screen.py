"""Shapes on which math-verify (sympy) takes seconds to hours, found by a few scans of a short answer.

math-verify evaluates what it parses: ``9^{{9}^{9}}`` asks sympy for an integer of 370 million digits, ``9**9**9**9``
(Python's notation, read from plain text) more, ``\\Gamma(10^{9})`` and ``9!!!`` a factorial of the same order,
``1.5E+999999`` a float it turns into a rational. The child process's time limit stops all of them, at the price of
the limit and a restart (2 s or more); [`exploding_shape`][exploding_shape] refuses them first, in well under a
millisecond, in every notation measured here:

- a power whose exponent holds another power or a factorial (a tower), a chain ``a^b^c``, a power of two numbers
  with more than [`MAX_POWER_DIGITS`][MAX_POWER_DIGITS] digits, an exponent with a number of more than
  [`MAX_EXPONENT_DIGITS`][MAX_EXPONENT_DIGITS] digits, or of more than
  [`MAX_GROUP_EXPONENT_DIGITS`][MAX_GROUP_EXPONENT_DIGITS] on a base that is not a plain number or symbol
  (``(1+10^{-9})^{999}``); powers written ``^``, ``**``, ``\\uparrow`` (Knuth's arrows, always refused),
  ``pow(...)``, ``exp(...)`` / ``\\exp``; the exponent is a braced, bracketed or parenthesised group
  (``^{{9}^{9}}``, ``^(9^9)``), a command with its arguments, or a run of digits or letters;
- e-notation with an exponent of more than [`MAX_EXPONENT_DIGITS`][MAX_EXPONENT_DIGITS] digits (``1e99999``);
- a factorial of an expression (``(9!)!``, ``n!``), repeated (``9!!``: math-verify reads it as ``(9!)!``), or of a
  number of more than [`MAX_FACTORIAL_DIGITS`][MAX_FACTORIAL_DIGITS] digits; ``\\binom``, ``\\Gamma``,
  ``factorial(...)`` and the big operators (``\\sum``, ``\\prod``, ``\\int``, ``\\lim``) of one another, or next to
  a power or a number of more than that many digits;
- a trigonometric function of a number of more than [`MAX_EXPONENT_DIGITS`][MAX_EXPONENT_DIGITS] digits, or of a
  power with an exponent of three digits or more (``\\sin(2^{9999})`` took 1.4 s: sympy reduces a 3,000-digit
  argument modulo pi);
- braces nested deeper than [`MAX_BRACE_DEPTH`][MAX_BRACE_DEPTH] (the parser itself slows down:
  twelve levels of ``{{...}}`` take 2 s) or parentheses and brackets deeper than
  [`MAX_PAREN_DEPTH`][MAX_PAREN_DEPTH].

[`unreadable_number`][unreadable_number] finds, in the same way, answers that no grader should read as a number,
whatever math-verify makes of them: a division by zero (``0/0`` equalled ``0`` in some processes and not in others:
math-verify's verdict on it depends on the hash seed), digits joined by an underscore (``1_000`` equalled ``1``), and
a number run into a numeric character that is not an ASCII digit (``5½``, ``5²``, ``5٤``).

Digit groups are read whole before counting: ``10^{9\\,999\\,999}``, ``10^{99,999}`` and ``10^{99 999}`` have
exponents of 7 and 5 digits. The scan is conservative: an ordinary answer it refuses (``\\binom{1000}{500}``) only
loses math-verify's final say; the built-in exact comparison still decides plain numbers.
"""

from __future__ import annotations

import re

MAX_EXPONENT_DIGITS = 4
"""An exponent holding a number of more digits than this is refused (``3^{9999}`` is read, ``3^{99999}`` not)."""
MAX_GROUP_EXPONENT_DIGITS = 2
"""An exponent of an expression (``(1+10^{-9})^{99}``, ``\\cos(x)^{99}``, a ``\\sum`` bound) holds at most this many
digits: sympy expands such powers (``(1+10^{-9999})^{9999}`` ran past a 3 s limit)."""
MAX_POWER_DIGITS = 10_000
"""A power of two plain numbers is read when its value has at most about this many digits (``3^{9999}``, 4,771
digits, is read; ``9999^{9999}``, 39,996, is not: ``\\tan(9999^{9999})`` took 0.9 s)."""
MAX_FACTORIAL_DIGITS = 3
"""A factorial (or ``\\binom``, ``\\Gamma``) of a number of more digits than this is refused (``999!`` is read)."""
MAX_BRACE_DEPTH = 5
"""Deepest nesting of ``{}`` read (``\\boxed{\\frac{\\sqrt{2}}{2}}`` nests 3)."""
MAX_PAREN_DEPTH = 2
"""Deepest nesting of ``()`` and ``[]`` read (math-verify's parser takes seconds on some deeper ones)."""

# Thousands separators and LaTeX spaces between digits: one digit group is one number.
_SEPARATOR = re.compile(r"(?<=[0-9])(?:\\[,!:; ]|\{,\}|[,\s'_\u2009\u202f])+(?=[0-9])")
_POWER = re.compile(r"\*\*|\^|\\[uU]parrow|\\upuparrows|[↑⇑]|\\exp(?![a-zA-Z])|(?<![a-zA-Z\\])(?:exp|pow|Pow)(?=\s*\()")
_ARROW = re.compile(r"\\[uU]parrow|\\upuparrows|[↑⇑]")
_FACTORIAL_FUNCTION = re.compile(
    r"\\(?:[dt]?binom|choose|Gamma|prod|sum|o?int|lim)(?![a-zA-Z])"
    r"|(?<![a-zA-Z])(?:factorial|binomial|gamma|Gamma)(?=\s*\()"
)  # functions that grow faster than powers, and the big operators that repeat what they hold
_PLAIN_BASE = re.compile(r"[{(\s]*[-+−]?\s*(?:[0-9.]+|[a-zA-Z]|\\pi|\\mathrm\{e\}|\\e)[})\s]*")
_FACTORIAL = re.compile(r"(?<!\\)!(?!=)")
_TRIG = re.compile(r"(?<![a-zA-Z])\\?(?:arc)?(?:sin|cos|tan|cot|sec|csc)h?(?![a-zA-Z])")
_E_NOTATION = re.compile(rf"[0-9.]\s*[eE]\s*[+\-−]?\s*[0-9]{{{MAX_EXPONENT_DIGITS + 1},}}")
_DIGITS = re.compile(r"[0-9]+")
_CLOSE = {"{": "}", "(": ")", "[": "]"}
ZERO_DIVISOR = re.compile(
    r"(?:/|÷|\\div(?![a-zA-Z])|\\over(?![a-zA-Z])|\\[dt]?frac\s*(?:\{[^{}]*\}|[0-9a-zA-Z]))"
    # Each \s* follows a character it cannot match, so a run of spaces splits one way only: "\s*[({]?\s*[+-]?\s*"
    # (the same strings) tried every split of the run, cubic time ("/" and 2,000 spaces took 36 s).
    r"\s*(?:[({]\s*)?(?:[+\-−]\s*)?0+(?:\.0+)?\s*[)}]?(?![0-9.])"
)
"""A division by zero: ``1/0``, ``5 \\div 0``, ``÷ (0)``, ``\\frac{x}{0}``, ``\\frac10``, ``{1 \\over 0}``."""
_UNDERSCORE_DIGITS = re.compile(r"[0-9]_+[0-9]")


def glued_number(text: str, start: int, end: int) -> bool:
    """Whether the number ``text[start:end]`` (ASCII digits) runs into another number: a numeric character that is
    not an ASCII digit next to it (``5½``, ``5²``, ``٤5``), or an underscore and a digit (``1_000``): it is then
    part of a number that is not plain, and reads as none."""
    before, after = text[start - 1 : start], text[end : end + 1]  # text[-1:0] is empty: no wrapping round
    if any(ch and not ch.isascii() and ch.isnumeric() for ch in (before, after)):
        return True
    if before == "_" and text[start - 2 : start - 1].isdigit():
        return True
    return after == "_" and text[end + 1 : end + 2].isdigit()


def unreadable_number(text: str) -> str | None:
    """Why ``text`` (a short answer) holds no number a grader should read, or ``None``.

    Args:
        text: an answer of at most a few hundred characters.

    Returns:
        ``"a division by zero"``, ``"digits joined by an underscore (1_000)"``, ``"a number run into a numeric
        character that is not an ASCII digit (5½)"``, or ``None``.

    Example:
        >>> unreadable_number("0/0"), unreadable_number("1_000"), unreadable_number("5½"), unreadable_number("x_1 = 5")
        ('a division by zero', 'digits joined by an underscore (1_000)', 'a number run into a numeric character that \
is not an ASCII digit (5½)', None)
    """
    if ZERO_DIVISOR.search(text):
        return "a division by zero"
    if _UNDERSCORE_DIGITS.search(text):
        return "digits joined by an underscore (1_000)"
    if any(glued_number(text, m.start(), m.end()) for m in _DIGITS.finditer(text)):
        return "a number run into a numeric character that is not an ASCII digit (5½)"
    return None


def _group_end(text: str, start: int) -> int:
    """The index after the group opened at ``text[start]`` (the end of the text if it is never closed)."""
    opener, closer, depth = text[start], _CLOSE[text[start]], 0
    for i in range(start, len(text)):
        depth += (text[i] == opener) - (text[i] == closer)
        if depth == 0:
            return i + 1
    return len(text)


def _operand(text: str, start: int) -> tuple[str, int]:
    """``(operand, end)``: the exponent that follows a power operator ending at ``start``."""
    i = start
    while i < len(text) and (text[i].isspace() or text[i] in "+-−"):  # signs and spaces
        i += 1
    if i == len(text):
        return "", i
    if text[i] in _CLOSE:
        end = _group_end(text, i)
        return text[i:end], end
    command = re.match(r"\\[a-zA-Z]+", text[i:])
    if command:  # a command and its braced arguments: ^\frac{1}{2}
        end = i + command.end()
        while end < len(text) and text[end] == "{":
            end = _group_end(text, end)
        return text[i:end], end
    run = re.match(r"[0-9.]+|[a-zA-Z]+", text[i:])
    end = i + (run.end() if run else 1)
    return text[i:end], end


def _base(text: str, end: int) -> str:
    """The base of a power operator at ``text[end]``: the group that closes there (with a command before it, as in
    ``\\cos(x)^2``), else the run of digits or letters."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    closers = {v: k for k, v in _CLOSE.items()}
    if i > 0 and text[i - 1] in closers:
        closer, opener, depth = text[i - 1], closers[text[i - 1]], 0
        for j in range(i - 1, -1, -1):
            depth += (text[j] == closer) - (text[j] == opener)
            if depth == 0:
                command = re.search(r"\\[a-zA-Z]+$|[_^]$", text[:j])
                return text[command.start() if command else j : i]
        return text[:i]
    run = re.search(r"(?:\\[a-zA-Z]+|[0-9.]+|[a-zA-Z]+)$", text[:i])
    return run.group() if run else ""


def _power_digits(base: str, exponent: str) -> int:
    """About how many digits ``base ^ exponent`` has when both are plain numbers (0 otherwise)."""
    base, exponent = base.strip("{}() "), exponent.strip("{}() ")
    if not (base.isdigit() and exponent.isdigit()):
        return 0
    return len(base.lstrip("0") or "0") * int(exponent)


def _depth(text: str, openers: str, closers: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in openers:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in closers:
            depth = max(depth - 1, 0)
    return deepest


def _longest_number(text: str) -> int:
    return max((len(run) for run in _DIGITS.findall(text)), default=0)


def exploding_shape(text: str) -> str | None:
    """Why math-verify must not read ``text`` (a short answer), or ``None`` when it may.

    Args:
        text: an answer of at most a few hundred characters (the scans are meant for short texts: a base is
            looked for backwards from each power).

    Returns:
        A reason such as ``"a power inside an exponent (a power tower)"``, or ``None``.

    Example:
        >>> exploding_shape("$9^{{9}^{9}}$"), exploding_shape("9**9**9**9"), exploding_shape("$\\\\frac{\\\\pi}{4}$")
        ('a power inside an exponent (a power tower)', 'a chain of powers (a^b^c, a power tower)', None)
    """
    text = _SEPARATOR.sub("", text)
    if _depth(text, "([", ")]") > MAX_PAREN_DEPTH:
        return f"parentheses or brackets nested deeper than {MAX_PAREN_DEPTH}"
    if _depth(text, "{", "}") > MAX_BRACE_DEPTH:
        return f"braces nested deeper than {MAX_BRACE_DEPTH}"
    if _E_NOTATION.search(text):
        return f"e-notation with an exponent of more than {MAX_EXPONENT_DIGITS} digits"
    for power in _POWER.finditer(text):
        if _ARROW.fullmatch(power.group()):
            return "Knuth's up-arrow notation (a power tower)"
        exponent, end = _operand(text, power.end())
        if _POWER.search(exponent) or _FACTORIAL.search(exponent) or _FACTORIAL_FUNCTION.search(exponent):
            return "a power inside an exponent (a power tower)"
        if _longest_number(exponent) > MAX_EXPONENT_DIGITS:
            return f"an exponent of more than {MAX_EXPONENT_DIGITS} digits"
        base = _base(text, power.start())
        if _power_digits(base, exponent) > MAX_POWER_DIGITS:
            return f"a power of more than {MAX_POWER_DIGITS:,} digits"
        plain = _PLAIN_BASE.fullmatch(base) or power.group() in ("pow", "Pow")
        if not plain and _longest_number(exponent) > MAX_GROUP_EXPONENT_DIGITS:
            return f"an exponent of more than {MAX_GROUP_EXPONENT_DIGITS} digits on an expression"
        if _POWER.match(text, len(text) - len(text[end:].lstrip())):
            return "a chain of powers (a^b^c, a power tower)"
    for trig in _TRIG.finditer(text):
        argument, end = _operand(text, trig.end())
        power = _POWER.match(text, len(text) - len(text[end:].lstrip()))
        if argument[:1].isdigit() and power:  # \sin 2^{99}: the power of a bare number is in the argument
            argument = text[trig.end() : _operand(text, power.end())[1]]
        powers = [_operand(argument, p.end())[0] for p in _POWER.finditer(argument)]
        if _longest_number(argument) > MAX_EXPONENT_DIGITS or any(_longest_number(e) > 2 for e in powers):
            return "a trigonometric function of a huge number"
    for bang in _FACTORIAL.finditer(text):
        before = text[: bang.start()].rstrip()
        if before.endswith("!"):
            return "a repeated factorial (9!! reads as (9!)!)"
        if before[-1:] in ")}]" or before[-1:].isalpha():
            return "a factorial of an expression"
        digits = re.search(r"[0-9]*$", before).group()
        if len(digits) > MAX_FACTORIAL_DIGITS:
            return f"a factorial of a number of more than {MAX_FACTORIAL_DIGITS} digits"
    for function in _FACTORIAL_FUNCTION.finditer(text):
        argument, _ = _operand(text, function.end())
        if _FACTORIAL_FUNCTION.search(argument) or _FACTORIAL.search(argument):
            return "a factorial-like function of a factorial (Gamma(Gamma(9)))"
    if _FACTORIAL_FUNCTION.search(text) and (_POWER.search(text) or _longest_number(text) > MAX_FACTORIAL_DIGITS):
        return f"a factorial or a big operator next to a power or a number of more than {MAX_FACTORIAL_DIGITS} digits"
    return None
