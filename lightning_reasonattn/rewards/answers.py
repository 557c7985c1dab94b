"""Final answers of untrusted completions: where they are, the number they hold, and a bounded math-verify.

Every function here reads model output, so each one is bounded by construction, whatever the input:

- only the last [`MAX_SCAN_CHARS`][MAX_SCAN_CHARS] characters of a completion are searched;
- a number longer than [`MAX_NUMBER_DIGITS`][MAX_NUMBER_DIGITS] digits reads as *no number* (Python refuses to convert
  strings of more than 4300 digits to ``int``, and no real answer is that long), so a completion made of a
  million ``7`` s scores 0 instead of raising;
- only ASCII digits count (``"٤٢"`` is no number), and a number run into another numeric character or joined to
  digits by an underscore is none either (``5½``, ``5²``, ``1_000``), nor is a division by zero (``0/0``,
  ``5 \\div 0``): none is read as its ASCII part, in either mode (math-verify is not asked about them);
- the regular expressions have no nested repetition (linear time).

With the optional ``math-verify`` package (``pip install 'lightning-reasonattn[math]'``),
[`math_verify_equal`][math_verify_equal] compares LaTeX answers such as ``\\frac{2}{\\sqrt{2}}`` and ``\\sqrt{2}``. Its
parser takes up to seconds on some short inputs (nested parentheses), and sympy minutes on others (``9^{{9}^{9}}``), so
it only ever sees a short answer ([`MATH_VERIFY_MAX_CHARS`][MATH_VERIFY_MAX_CHARS]) that passes the shape screen of
[`lightning_reasonattn.rewards.math_screen`][lightning_reasonattn.rewards.math_screen] (power towers in any notation,
huge exponents, e-notation, factorials; see [`math_verify_candidate`][math_verify_candidate]), and it runs in a child
process that is killed after [`MATH_VERIFY_TIMEOUT`][MATH_VERIFY_TIMEOUT] seconds (the answer then counts as "not
equal"): a last resort for the shapes the screen does not know.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from fractions import Fraction

from .math_screen import MAX_PAREN_DEPTH, ZERO_DIVISOR, exploding_shape, glued_number, unreadable_number
from .math_verify_worker import MathVerifyWorker

MAX_SCAN_CHARS = 10_000
"""Only this many trailing characters of a completion are searched for its answer."""
MAX_NUMBER_DIGITS = 100
"""A number with more digits than this (integer and fraction part together) reads as no number."""
MATH_VERIFY_MAX_CHARS = 200
"""math-verify sees at most this many characters of a completion (its answer block, or its tail)."""
MATH_VERIFY_MAX_NESTING = MAX_PAREN_DEPTH
"""Answers with parentheses or brackets nested deeper than this skip math-verify (its parser is slow on them)."""
MATH_VERIFY_TIMEOUT = 1.0
"""Default time limit, in seconds, of one math-verify comparison (the child process is killed after it)."""

_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
_DIGITS = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:/[0-9]+(?:\.[0-9]+)?)?")
_FRAC = re.compile(r"\\[dt]?frac\{(-?[0-9]+)\}\{(-?[0-9]+)\}")
_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def extract_answer_block(text: str) -> str | None:
    """The content of the last complete ``<answer>...</answer>`` in the last [`MAX_SCAN_CHARS`][MAX_SCAN_CHARS]
    characters.

    Args:
        text: a completion's text.

    Returns:
        The content (not stripped), or ``None`` if there is no complete block.
    """
    tail = text[-MAX_SCAN_CHARS:]
    close = tail.rfind(_ANSWER_CLOSE)
    start = tail.rfind(_ANSWER_OPEN, 0, close) if close != -1 else -1
    return None if start == -1 else tail[start + len(_ANSWER_OPEN) : close]


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

    Looks in the last [`MAX_SCAN_CHARS`][MAX_SCAN_CHARS] characters, inside the last ``<answer>`` block if any, for the
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


def _too_long(*numbers: str) -> bool:
    return sum(len(m) for n in numbers for m in _DIGITS.findall(n)) > MAX_NUMBER_DIGITS


def parse_number(text: str, strict: bool = False) -> Fraction | None:
    """The last number in ``text``, exactly: ``"$1,234.50"`` -> 1234.5, ``"\\frac{3}{4}"``, ``"3/4"`` -> 3/4.

    Args:
        text: answer text; ``$``, ``\\!`` and thousands separators are ignored; only ASCII digits count; the
            minus sign ``−`` (U+2212) is a minus.
        strict: the whole text (less whitespace and a final period) must be the number, so that LaTeX such as
            ``\\sqrt{2}`` reads as no number rather than as 2.

    Returns:
        The number as a Fraction, or ``None`` if there is none, if it is divided by zero (``0/0``, ``1/0.0``,
        ``5 \\div 0``), if it runs into a numeric character that is not an ASCII digit or is joined to digits by
        an underscore (``5½``, ``5²``, ``1_000``: the last number is not plain, so the answer is no number), or has
        more than [`MAX_NUMBER_DIGITS`][MAX_NUMBER_DIGITS] digits in it.

    Example:
        >>> parse_number("The total is $1,234.50."), parse_number("\\\\sqrt{2}", strict=True)
        (Fraction(2469, 2), None)
        >>> parse_number("1" * 101) is None  # longer than MAX_NUMBER_DIGITS
        True
    """
    # U+2212 (the minus sign of typeset math) is a minus: "−5" read as 5 paid a wrong sign.
    text = text.replace("\\$", "").replace("$", "").replace("\\!", "").replace("−", "-")
    text = _THOUSANDS.sub("", text)
    if strict:
        text = text.strip().rstrip(".").strip()
        if not (_FRAC.fullmatch(text) or _NUMBER.fullmatch(text)):
            return None
    fracs, plain = list(_FRAC.finditer(text)), list(_NUMBER.finditer(text))
    if fracs and (not plain or fracs[-1].end() >= plain[-1].end()):
        num, den = fracs[-1].group(1), fracs[-1].group(2)
        if _too_long(num, den):
            return None
        return Fraction(int(num), int(den)) if int(den) else None
    if not plain:
        return None
    last = plain[-1]
    num, _, den = last.group(0).partition("/")
    if _too_long(num, den) or glued_number(text, last.start(), last.end()) or (den and not Fraction(den)):
        return None
    value = Fraction(num) / (Fraction(den) if den else 1)
    if value == 0 and any(  # the divisor of a division by zero: 5 \div 0, \frac{x}{0}
        d.start() < last.start() < d.end()
        for d in ZERO_DIVISOR.finditer(text, 0, last.end() + 8)  # from the start: any run of spaces may precede 0
    ):
        return None
    return value


# ------------------------------------------------------------------------------------------ math-verify


@functools.lru_cache(maxsize=1)
def has_math_verify() -> bool:
    """Whether the ``math_verify`` package is installed (it is never imported in this process)."""
    return importlib.util.find_spec("math_verify") is not None


_WORKER: MathVerifyWorker | None = None


def math_verify_worker() -> MathVerifyWorker:
    """The process-wide [`MathVerifyWorker`][lightning_reasonattn.rewards.math_verify_worker.MathVerifyWorker]
    (made on first use)."""
    global _WORKER
    if _WORKER is None:
        _WORKER = MathVerifyWorker()
    return _WORKER


def _latex_env(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text.strip()}$"


def math_verify_candidate(text: str) -> str | None:
    """The short text math-verify may read from a completion, or ``None`` when it must not read any.

    The content of the last ``<answer>`` block (as LaTeX) when there is one, else the last
    [`MATH_VERIFY_MAX_CHARS`][MATH_VERIFY_MAX_CHARS] characters. ``None`` when that answer block is longer than
    [`MATH_VERIFY_MAX_CHARS`][MATH_VERIFY_MAX_CHARS], or the candidate holds a number longer than
    [`MAX_NUMBER_DIGITS`][MAX_NUMBER_DIGITS] digits (thousands separators removed),
    parentheses nested deeper than [`MATH_VERIFY_MAX_NESTING`][MATH_VERIFY_MAX_NESTING], a power inside an exponent, an
    exponent of five digits or more, or a factorial of a bracketed expression or of a number of four digits or more:
    shapes on which math-verify's parser or sympy takes seconds, or more. ``None`` too when it holds a number no
    grader should read ([`unreadable_number`][lightning_reasonattn.rewards.math_screen.unreadable_number]: ``0/0``,
    ``1_000``, ``5½``), on which math-verify's verdict is wrong or hangs on the hash seed.

    Args:
        text: a completion's text.

    Returns:
        The candidate, or ``None``.

    Example:
        >>> math_verify_candidate("<think>...</think><answer>\\\\sqrt{2}</answer>")
        '$\\\\sqrt{2}$'
        >>> math_verify_candidate("<answer>9^{9^{9}}</answer>") is None
        True
    """
    block = extract_answer_block(text)
    if block is not None and len(block) > MATH_VERIFY_MAX_CHARS:
        return None
    candidate = _latex_env(block) if block is not None else text[-MATH_VERIFY_MAX_CHARS:]
    if any(len(run) > MAX_NUMBER_DIGITS for run in _DIGITS.findall(_THOUSANDS.sub("", candidate))):
        return None
    if exploding_shape(candidate) is not None or unreadable_number(candidate) is not None:
        return None
    return candidate


def math_verify_equal(gold: str, completion: str, timeout: float | None = MATH_VERIFY_TIMEOUT) -> bool:
    """Whether math-verify finds the completion's answer equal to ``gold``, within a time limit.

    The comparison runs in a child process (see
    [`lightning_reasonattn.rewards.math_verify_worker`][lightning_reasonattn.rewards.math_verify_worker]) that is
    killed when it takes longer than ``timeout``: a hard limit, in any thread.

    Args:
        gold: the reference answer's text (plain or LaTeX).
        completion: the completion's text; only [`math_verify_candidate`][math_verify_candidate] of it is read.
        timeout: seconds for parsing both and comparing; ``None``: no limit (the shape checks still apply).

    Returns:
        ``True`` if equal; ``False`` if not, if math-verify fails or runs out of time, if the candidate is
        refused, or if math-verify is not installed.
    """
    candidate = math_verify_candidate(completion)
    if not has_math_verify() or candidate is None or len(gold) > MATH_VERIFY_MAX_CHARS or exploding_shape(gold):
        return False
    if unreadable_number(gold) is not None or not candidate.strip():  # no text: nothing to compare
        return False
    return math_verify_worker().equal(_latex_env(gold), candidate, timeout)
