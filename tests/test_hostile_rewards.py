"""Hostile inputs to the rewards: every case either gives its documented result or a clear error, never a crash.

:data:`BAD_INPUTS` is the enumerated list (importable: docs/train.md's "Robustness" count and
benchmarks/bench_rewards_hostile.py read it). A case is "clean" when the call returns the expected value, or
raises the expected exception type with a message that names the problem. Three kinds:

- hostile completions (model output) x every built-in reward: the reward must return 0.0, not raise
  (Python's 4300-digit int limit, giant fractions, digit runs with separators, unicode digits, nested braces,
  power towers for math-verify, regex-unfriendly floods, ...);
- misbehaving reward functions under :func:`score_completions` (a clear :class:`RewardError`; ``None`` allowed);
- bad files and reward names (refused when read or resolved, with the fix in the message);
- hostile reference values (the data's ``numbers``, ``target``, ``answer``), completions of the wrong type, and
  answers whose evaluation explodes in math-verify (refused by the screen before the child process is asked).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from lightning_reasonattn.grpo.data import reward_functions, task_records
from lightning_reasonattn.grpo.settings import RewardSettings, TaskSettings
from lightning_reasonattn.rewards import (
    RewardError,
    answers,
    completion_text,
    countdown_reward,
    format_reward,
    numeric_answer_reward,
    score_completions,
)
from lightning_reasonattn.rewards.completions import MAX_COMPLETION_PARTS

HAS_MATH_VERIFY = importlib.util.find_spec("math_verify") is not None

HOSTILE_COMPLETIONS: list[tuple[str, Any]] = [
    ("int-string limit: 4301 nines", "9" * 4301),
    ("5 million sevens", "7" * 5_000_000),
    ("0. and 5000 zeros", "0." + "0" * 5000),
    ("5000 digits after the point", "3." + "1" * 5000),
    ("decimal of 3000 + 3000 digits", "9" * 3000 + "." + "9" * 3000),
    ("negative 4400 digits", "-" + "9" * 4400),
    ("fraction 1/ 4400 digits", "1/" + "9" * 4400),
    ("frac 5000-digit numerator", "\\frac{" + "9" * 5000 + "}{1}"),
    ("dfrac 5000-digit denominator", "\\dfrac{1}{" + "9" * 5000 + "}"),
    ("boxed frac 5000 digits", "\\boxed{\\frac{" + "9" * 5000 + "}{1}}"),
    ("thousands separators 1,111,...", "1," + ",".join(["111"] * 3000)),
    ("thousands separators in an answer", "<answer>" + ",".join(["999"] * 2000) + "</answer>"),
    ("answer block of 4400 digits", "<answer>" + "9" * 4400 + "</answer>"),
    ("boxed 4400 digits", "\\boxed{" + "9" * 4400 + "}"),
    ("GSM8K #### 4400 digits", "#### " + "9" * 4400),
    ("dollar 4400 digits", "$" + "9" * 4400 + "$"),
    ("Arabic-Indic digits", "٤٢" * 1000),
    ("full-width digits", "<answer>" + "４２" * 1000 + "</answer>"),
    ("superscript digits", "²" * 5000),
    ("unclosed boxed x10000", "\\boxed{" * 10_000),
    ("boxed with 5000 nested braces", "\\boxed{" + "{" * 5000 + "1" + "}" * 5001),
    ("frac flood", "\\frac{1}{" * 20_000),
    ("answer-tag flood", "<answer>" * 100_000),
    ("answer close flood", "</answer>" * 100_000),
    ("think/answer alternation", "<think>" + "</think><answer>" * 100_000),
    ("dots flood 1.1.1", "1." * 100_000),
    ("slashes flood 1/1/1", "1/" * 100_000),
    ("commas flood", "1," * 100_000),
    ("dollar flood", "$" * 100_000),
    ("hashes flood", "#" * 100_000),
    ("NUL bytes", "\x00" * 10_000),
    ("lone surrogates", "\ud800" * 1000),
    ("50 nested parentheses", "<answer>" + "(" * 50 + "1" + ")" * 50 + "</answer>"),
    ("10000 nested parentheses", "(" * 10_000 + "3 + 3" + ")" * 10_000),
    ("power tower 9^{9^{9}}", "<answer>9^{9^{9}}</answer>"),
    ("power tower 9^9^9 boxed", "so \\boxed{9^9^9}"),
    ("power tower in prose", "the answer is $10^{10^{10}}$"),
    ("exponent 999999", "<answer>3^{999999}</answer>"),
    ("factorial of a power", "<answer>(10^{10})!</answer>"),
    ("factorial of 100000", "<answer>100000!</answer>"),
    ("Python code", "<answer>__import__('os').system('echo pwned')</answer>"),
    ("Python power", "<answer>9**9**9</answer>"),
    ("empty", ""),
    ("None", None),
    ("empty message list", []),
    ("message with None content", [{"role": "assistant", "content": None}]),
    ("10000 messages", [{"role": "assistant", "content": "9" * 10}] * 10_000),
]
"""``(name, completion)``: model output meant to break a reward (each scores 0.0 against every reward below)."""

REWARDS: list[tuple[str, Callable[[Any], list]]] = [
    ("countdown", lambda c: countdown_reward(None, [c], numbers=[[3, 3]], target=[6])),
    ("numeric", lambda c: numeric_answer_reward(None, [c], answer=["42"], use_math_verify=False)),
    ("numeric+math-verify", lambda c: numeric_answer_reward(None, [c], answer=["42"], use_math_verify=True)),
    ("format", lambda c: format_reward(None, [c])),
]
"""``(name, call)``: each built-in reward on one completion (the math-verify one needs the ``math`` extra)."""


@dataclass(frozen=True)
class Case:
    """One hostile input: ``call(tmp)`` must return ``expect``, or raise ``expect = (type, message regex)``.

    ``tmp`` is an empty folder the call may write files into.
    """

    name: str
    call: Callable[[Path], Any]
    expect: Any
    needs_math_verify: bool = False


def _misbehaving(make_values):
    def bad(prompts, completions, **kwargs):
        values = make_values()
        if isinstance(values, Exception):
            raise values
        return values

    return bad


def _score(make_values, n=2):
    def call(tmp):
        return score_completions([_misbehaving(make_values)], None, [f"q{i}" for i in range(n)], ["c"] * n)[0].tolist()

    return call


def _jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def _records(text: str | bytes, answer_column: str | None = None, rewards=("numeric",), name="records.jsonl"):
    """Write ``text`` (or bytes) to a file and read it as a task of the ``rewards`` (default: ``numeric``)."""

    def call(tmp):
        path = tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        funcs, _ = reward_functions(RewardSettings(list(rewards)), TaskSettings(name=str(path)))
        return task_records(TaskSettings(name=str(path), answer_column=answer_column), chat=False, reward_funcs=funcs)

    return call


def _resolve(name: str):
    """Resolve a reward name with ``tmp`` importable (it holds a module whose own import fails)."""

    def call(tmp):
        (tmp / "broken_dep_rewards.py").write_text("import a_module_that_does_not_exist_anywhere\n")
        sys.path.insert(0, str(tmp))
        try:
            return reward_functions(RewardSettings([name]), TaskSettings())
        finally:
            sys.path.remove(str(tmp))
            sys.modules.pop("broken_dep_rewards", None)

    return call


GOOD = {"prompt": "2+2?", "answer": "4"}
FILE_CASES = [
    Case(
        "file: a record without the answer column",
        _records(_jsonl(GOOD, {"prompt": "3+3?"})),
        (ValueError, r"records.jsonl, line 2 \(record 1\) has no column 'answer'"),
    ),
    Case(
        "file: no record has the answer column",
        _records(_jsonl({"prompt": "2+2?", "solution": "4"})),
        (ValueError, "needs column 'answer'.*answer_column"),
    ),
    Case("file: answer_column missing", _records(_jsonl(GOOD), "ans"), (ValueError, "has no column 'ans'")),
    Case(
        "file: a record with an extra column",
        _records(_jsonl(GOOD, {**GOOD, "x": 1})),
        (ValueError, r"records.jsonl, line 2 \(record 1\) has column 'x'"),
    ),
    Case(
        "file: a record that is not an object",
        _records(_jsonl(GOOD, "[1, 2]")),
        (ValueError, r"line 2 \(record 1\) is list"),
    ),
    Case(
        "file: a line that is not JSON", _records(_jsonl(GOOD, "{'prompt': 1}")), (ValueError, "line 2: not valid JSON")
    ),
    Case(
        "file: a prompt that is a number",
        _records(_jsonl({"prompt": 42, "answer": "4"})),
        (ValueError, r"line 1 \(record 0\) has prompt 42 \(int\)"),
    ),
    Case(
        "reward name: no such module",
        _resolve("no_such_pkg.rewards.fn"),
        (ValueError, "no module named 'no_such_pkg'.*package.module:function.*package.module.function"),
    ),
    Case(
        "reward name: no such function",
        _resolve("json.no_such_fn"),
        (ValueError, "module 'json' has no attribute 'no_such_fn'"),
    ),
    Case("reward name: not callable", _resolve("json:__doc__"), (ValueError, "is a str, not a function")),
    Case("reward name: no dot, no colon", _resolve("accuracy"), (ValueError, "not an import path")),
    Case(
        "reward name: a module whose import fails",
        _resolve("broken_dep_rewards.fn"),
        (ImportError, "'broken_dep_rewards' could not be imported.*a_module_that_does_not_exist"),
    ),
]


PROTOCOL_CASES = [
    Case("reward returns None everywhere", _score(lambda: [None, None]), [float("nan")] * 2),
    Case("reward returns NaN", _score(lambda: [0.0, float("nan")]), (RewardError, "returned nan at prompt index 1")),
    Case("reward returns inf", _score(lambda: [float("-inf"), 0.0]), (RewardError, "returned -inf at prompt index 0")),
    Case("reward returns too few values", _score(lambda: [1.0]), (RewardError, "returned 1 values for 2 completions")),
    Case("reward returns a string", _score(lambda: ["1", 0.0]), (RewardError, "returned '1' at prompt index 0")),
    Case(
        "reward returns nested lists",
        _score(lambda: [[1.0], [0.0]]),
        (RewardError, r"returned \[1.0\] at prompt index 0"),
    ),
    Case("reward returns a float", _score(lambda: 1.0), (RewardError, "returned float, not a list")),
    Case(
        "reward returns a generator",
        _score(lambda: (x for x in [1.0, 1.0])),
        (RewardError, "returned generator, not a list"),
    ),
    Case("reward raises", _score(lambda: KeyError("solution")), (RewardError, "raised KeyError.*prompt index 0")),
    Case(
        "reward returns a 5000-digit int",
        _score(lambda: [10**5000, 0]),
        (RewardError, "returned an int of about 5001 digits at prompt index 0"),
    ),
]


def _hostile_cases() -> list[Case]:
    return [
        Case(f"{reward}: {name}", lambda tmp, call=call, c=completion: call(c), [0.0], "math-verify" in reward)
        for name, completion in HOSTILE_COMPLETIONS
        for reward, call in REWARDS
    ]


def _reference_cases() -> list[Case]:
    """Hostile values in the answer / target columns: data errors, reported clearly, or a plain 0."""
    return [
        Case(
            "numeric: answer 10**5000",
            lambda tmp: numeric_answer_reward(None, ["42"], [10**5000], use_math_verify=False),
            (ValueError, r"column 'answer', row 0: an int of about 5001 digits has more than 100 digits"),
        ),
        Case(
            "numeric: answer of 4400 digits as text",
            lambda tmp: numeric_answer_reward(None, ["42"], ["9" * 4400], use_math_verify=False),
            (ValueError, r"column 'answer', row 0: .* holds a number of more than 100 digits"),
        ),
        Case(
            "countdown: target of 5000 digits",
            lambda tmp: countdown_reward(None, ["<answer>3+3</answer>"], [[3, 3]], ["9" * 5000]),
            (ValueError, r"column 'target', row 0: .* has over 100 digits"),
        ),
    ]


# ------------------------------------------------------------------------------- reference columns, per call


def _countdown(numbers=(3, 3), target=6, completion="<answer>3+3</answer>"):
    """countdown_reward on two rows: a good one, then the hostile value in row 1."""
    return lambda tmp: countdown_reward(None, ["<answer>3+3</answer>", completion], [[3, 3], numbers], [6, target])


def _numeric(answer, verify=False):
    return lambda tmp: numeric_answer_reward(None, ["42", "42"], ["42", answer], use_math_verify=verify)


REFERENCE_COLUMN_CASES = [  # each names the column, the row and the type received; none computes for seconds
    *(
        Case(
            f"countdown: target {name}", _countdown(target=value), (ValueError, f"column 'target', row 1: .*{pattern}")
        )
        for name, value, pattern in [
            ("'1e9999999' (ten million digits)", "1e9999999", r"'1e9999999' \(str\) is not an integer's text"),
            ("'-1E+99999'", "-1E+99999", r"'-1E\+99999' \(str\) is not an integer's text"),
            ("infinity", math.inf, r"inf \(float\): not finite"),
            ("minus infinity", -math.inf, r"-inf \(float\): not finite"),
            ("2.5", 2.5, r"2.5 \(float\): not an integer"),
            ("1e308", 1e308, r"has more than 100 digits"),
            ("10**5000", 10**5000, r"has more than 100 digits"),
            ("bytes", b"6", r"b'6' \(bytes\): bytes, not an integer"),
            ("None", None, r"None \(NoneType\): not an integer"),
            ("a list", [6], r"\[6\] \(list\): not an integer"),
            ("True", True, r"True \(bool\): a boolean"),
            ("Decimal('6')", Decimal("6"), r"\(Decimal\): not an integer"),
            ("Arabic-Indic digit", "٦", r"'٦' \(str\) is not an integer's text"),
        ]
    ),
    *(
        Case(
            f"countdown: numbers {name}",
            _countdown(numbers=value),
            (ValueError, rf"column 'numbers', row 1: .*{pattern}"),
        )
        for name, value, pattern in [
            ("['a', 2, 3]", ["a", 2, 3], r"holds 'a' \(str\) at position 0: not an integer"),
            ("None", None, r"None \(NoneType\) is not a list"),
            ("[3.5, 3] (was read as [3, 3])", [3.5, 3], r"holds 3.5 \(float\) at position 0: not an integer"),
            ("'33' (was read as [3, 3])", "33", r"'33' \(str\) is not a list"),
            ("[b'3', 3] (was read as [3, 3])", [b"3", 3], r"holds b'3' \(bytes\) at position 0"),
            ("nested lists", [[3], [3]], r"holds \[3\] \(list\) at position 0"),
            ("a 21-digit number", [10**20, 3], r"at position 0: answers are read as unsigned numbers of at most 12"),
            ("infinity", [math.inf, 3], r"holds inf \(float\) at position 0: not finite"),
            ("100 numbers", list(range(100)), r"holds 100 numbers: a Countdown answer uses 1 to 16"),
            ("a negative number", [-3, 3], r"holds -3 at position 0: answers are read as unsigned"),
            ("a dict", {"a": 3}, r"\(dict\) is not a list"),
            ("[True, 3]", [True, 3], r"holds True \(bool\) at position 0: a boolean"),
            ("an empty list", [], r"holds 0 numbers"),
        ]
    ),
    *(
        Case(f"numeric: answer {name}", _numeric(value), (ValueError, rf"column 'answer', row 1: .*{pattern}"))
        for name, value, pattern in [
            ("None", None, r"is null \(None\)"),
            ("bytes", b"42", r"b'42' \(bytes\) is neither a number nor a string: decode"),
            ("a list", [42], r"\[42\] \(list\) is neither"),
            ("a dict", {"value": 42}, r"\(dict\) is neither"),
            ("infinity", math.inf, r"inf \(float\) is not finite"),
            ("NaN", math.nan, r"nan \(float\) is not finite"),
            ("1e300", 1e300, r"has more than 100 digits"),
            ("'1e9999999' without math-verify", "1e9999999", r"is not a plain number"),
        ]
    ),
    Case(
        "numeric+math-verify: answer 9^{9^{9}}",
        _numeric("9^{9^{9}}", verify=True),
        (ValueError, r"column 'answer', row 1: '9\^\{9\^\{9\}\}' holds a power inside an exponent"),
        needs_math_verify=True,
    ),
    Case(
        "numeric+math-verify: answer '1e9999999'",
        _numeric("1e9999999", verify=True),
        (ValueError, r"column 'answer', row 1: '1e9999999' holds e-notation"),
        needs_math_verify=True,
    ),
    Case(
        "numeric+math-verify: a LaTeX answer of 300 characters",
        _numeric("\\sqrt{2}+" * 33 + "1", verify=True),
        (ValueError, r"column 'answer', row 1: .* its 298 characters are more than math-verify reads \(200"),
        needs_math_verify=True,
    ),
]
"""Hostile values in the reference columns of a reward call (data, not model output)."""


# ------------------------------------------------------------------------------- completions of the wrong type


def _nested(inner: Any, depth: int) -> Any:
    """``inner`` wrapped ``depth`` times in a list (a dict ``{"x": ...}`` when ``inner`` is a dict): Python's own
    ``repr`` of it raises RecursionError."""
    value = inner
    for _ in range(depth):
        value = {"x": value} if isinstance(inner, dict) else [value]
    return value


class _BadRepr:
    def __repr__(self):
        raise ZeroDivisionError("a __repr__ that raises")


WRONG_COMPLETIONS = [  # (name, completion, the message's pattern after "completion 1: ")
    ("bytes", b"<answer>42</answer>", r"not bytes \(b'<answer>42</answer>'\): decode it first"),
    ("bytearray", bytearray(b"42"), r"not bytearray .*: decode it first"),
    ("memoryview", memoryview(b"42"), r"not memoryview \(b'42'\)"),
    ("an int", 42, r"not int \(42\)"),
    ("a text part holding an int", [{"role": "assistant", "content": [{"type": "text", "text": 42}]}],
     r"message 0's content, part 0: its text is int \(42\), not a string"),
    ("a message content of bytes", [{"role": "assistant", "content": b"42"}], r"message 0's content .* not bytes"),
    ("a list of lists of messages", [[{"role": "assistant", "content": "42"}]], r"message 0 is list"),
    ("a list of ints", [4, 2], r"message 0 is int \(4\)"),
    ("a part that is a list", [{"role": "assistant", "content": [["42"]]}], r"message 0's content, part 0 is list"),
    ("a message whose content is a dict", {"role": "assistant", "content": {"text": "42"}}, r"content .* not dict"),
    ("a list nested 100,000 deep", _nested([], 100_000), r"message 0 is list \(\[\[\[\[\[\[\[\.\.\.\]\]"),
    ("a part nested 100,000 deep", [{"role": "assistant", "content": [_nested([], 100_000)]}],
     r"message 0's content, part 0 is list \(\[\[\[\[\["),
    ("a content of a dict nested 100,000 deep", {"role": "assistant", "content": _nested({}, 100_000)},
     r"the message's content is a string or a list of parts, not dict \(\{'x': \{'x': "),
    ("an object whose repr raises", [_BadRepr()], r"message 0 is _BadRepr \(an unprintable _BadRepr\)"),
]  # fmt: skip
TYPED_REWARDS: list[tuple[str, Callable[[Any], list]]] = [
    ("countdown", lambda c: countdown_reward(None, ["1", c], [[3, 3]] * 2, [6, 6])),
    ("numeric", lambda c: numeric_answer_reward(None, ["1", c], ["42", "42"], use_math_verify=False)),
    ("format", lambda c: format_reward(None, ["1", c])),
]
COMPLETION_TYPE_CASES = [
    *(
        Case(
            f"{reward}: completion {name}",
            lambda tmp, call=call, c=c: call(c),
            (TypeError, rf"completion 1: .*{pattern}"),
        )
        for name, c, pattern in WRONG_COMPLETIONS
        for reward, call in TYPED_REWARDS
    ),
    Case(
        "numeric: a content of plain string parts (was read as empty)",
        lambda tmp: numeric_answer_reward(
            None, [[{"role": "assistant", "content": ["4", "2"]}]], ["42"], use_math_verify=False
        ),
        [1.0],
    ),
    Case(
        "format: a completion of 2 million characters in the format (bounded time)",
        lambda tmp: format_reward(None, ["<think>" + "a" * 2_000_000 + "</think><answer>1</answer>"]),
        [0.0],
    ),
]
"""Completions that are not text or messages: a TypeError naming the row and the type, whatever the nesting."""


# ------------------------------------------------------------------------------- math-verify's shape screen

EXPLODING_ANSWERS: list[tuple[str, str]] = [
    ("power tower in nested braces 9^{{9}^{9}}", "<answer>9^{{9}^{9}}</answer>"),
    ("power tower in a boxed, nested braces", "so \\boxed{9^{{9}^{9}}}"),
    ("Python power tower in plain text 9**9**9**9", "the answer: 9**9**9**9"),
    ("Python power tower with parentheses", "<answer>9**(9**9)</answer>"),
    ("caret tower with parentheses 9^(9^9)", "so it is 9^(9^9)"),
    ("pow() of pow()", "pow(9, pow(9, 9))"),
    ("Knuth's up-arrows", "<answer>9 \\uparrow\\uparrow 9</answer>"),
    ("unicode up-arrows", "<answer>3 ↑↑↑ 3</answer>"),
    ("Python exponent of 6 digits", "<answer>2**100000</answer>"),
    ("exponent with LaTeX thin spaces 9\\,999\\,999", "<answer>10^{9\\,999\\,999}</answer>"),
    ("exponent with thousands commas", "<answer>10^{99,999}</answer>"),
    ("exponent with a space between digit groups", "<answer>10^{99 999}</answer>"),
    ("e-notation 1e9999999", "<answer>1e9999999</answer>"),
    ("e-notation 1.5E+999999", "<answer>1.5E+999999</answer>"),
    ("e-notation in prose", "the result is 2.5e-99999"),
    ("exp of a 7-digit number", "<answer>\\exp(9999999)</answer>"),
    ("double factorial 9!!", "<answer>9!!</answer>"),
    ("quadruple factorial 9!!!!", "<answer>9!!!!</answer>"),
    ("Gamma of a power", "<answer>\\Gamma(10^{9})</answer>"),
    ("Gamma of Gamma", "<answer>\\Gamma(\\Gamma(9))</answer>"),
    ("binomial of a power", "<answer>\\binom{10^{9}}{5}</answer>"),
    ("binomial of 6-digit numbers", "<answer>\\binom{100000}{50000}</answer>"),
    ("factorial(factorial(9))", "<answer>factorial(factorial(9))</answer>"),
    ("sum to 9999 of powers", "<answer>\\sum_{i=1}^{9999} i^{9999}</answer>"),
    ("power 9999 of a sum", "<answer>(1+10^{-9999})^{9999}</answer>"),
    ("power 9999 of a cosine", "<answer>\\cos(\\pi/9999)^{9999}</answer>"),
    ("integral to 9999", "<answer>\\int_0^{9999} x^{9999} dx</answer>"),
    ("12 nested braces", "<answer>" + "{" * 12 + "1" + "}" * 12 + "</answer>"),
    ("tangent of a power of 40,000 digits", "<answer>\\tan(9999^{9999})</answer>"),
    ("sine of 2^{9999}", "<answer>\\sin(2^{9999})</answer>"),
    ("sine of 2^{9999} without parentheses", "so the answer is \\sin 2^{9999}"),
]
"""``(name, completion)``: answers on which math-verify takes a second to hours (each measured past 1 s, or a shape
of one), refused by the screen before the child process is asked."""


@contextlib.contextmanager
def _no_child_process():
    """math-verify 'installed', with a worker that fails the test if it is ever asked."""

    class Refuses:
        def equal(self, gold, answer, timeout):
            raise AssertionError(f"math-verify was asked about {answer!r}")

    with (
        mock.patch.object(answers, "has_math_verify", lambda: True),
        mock.patch.object(answers, "math_verify_worker", Refuses),
    ):
        yield


def _screened(completion: str):
    def call(tmp):
        with _no_child_process():
            return numeric_answer_reward(None, [completion], ["\\sqrt{2}"], use_math_verify=True)

    return call


def _screen_cases() -> list[Case]:
    return [Case(f"math-verify screen: {name}", _screened(c), [0.0]) for name, c in EXPLODING_ANSWERS]


# ------------------------------------------------------------------- answers read wrongly, and odd completion types


def _numeric_verified(completion: str, reference: Any):
    """numeric with math-verify 'installed' but never asked: the built-in check and the screen alone decide."""

    def call(tmp):
        with _no_child_process():
            return numeric_answer_reward(None, [completion], [reference], use_math_verify=True)

    return call


def _both_modes(completion: str, reference: Any) -> list[Callable[[Path], Any]]:
    """The same comparison without math-verify, and with a math-verify that must not be asked."""
    return [
        lambda tmp: numeric_answer_reward(None, [completion], [reference], use_math_verify=False),
        _numeric_verified(completion, reference),
    ]


class _HostileStr(str):
    """A str whose methods (and ``str()``, ``len()``, indexing, ``repr``) all raise: only its characters count."""

    def _boom(self, *args, **kwargs):
        raise ZeroDivisionError("a str subclass method")

    strip = lstrip = rstrip = split = rsplit = splitlines = count = find = rfind = startswith = endswith = _boom
    replace = partition = rpartition = encode = __str__ = __repr__ = __len__ = __getitem__ = __iter__ = _boom
    __contains__ = __add__ = __radd__ = __hash__ = __eq__ = __format__ = _boom


class _CountingSequence(Sequence):
    """``n`` copies of ``item``, counting how many are read."""

    def __init__(self, item: Any, n: int):
        self.item, self.n, self.reads = item, n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        self.reads += 1
        return self.item


def _reads(make: Callable[[], tuple[Any, _CountingSequence]]):
    """``(completion_text(completion), at most MAX_COMPLETION_PARTS + 1 items read)``."""

    def call(tmp):
        completion, counter = make()
        text = completion_text(completion)
        return text, counter.reads <= MAX_COMPLETION_PARTS + 1

    return call


def _million_messages():
    counter = _CountingSequence({"role": "assistant", "content": "<answer>5</answer>"}, 1_000_000)
    return counter, counter


def _million_parts():
    counter = _CountingSequence({"type": "text", "text": "5"}, 1_000_000)
    return [{"role": "assistant", "content": counter}], counter


def _shared_megabyte_messages():  # 10,000 references to one string of a million characters: 10 GB once joined
    counter = _CountingSequence({"role": "assistant", "content": "5" * 1_000_000}, 10_000)
    return counter, counter


EMPTY_REFERENCES = ["", " ", "#### ", "\\boxed{}", "<answer> </answer>"]
EDGE_CASES = [
    *(
        Case(f"numeric ({mode}): {name}", call, [0.0])
        for name, completion, reference in [
            ("'5½' against 5 (the ½ was dropped)", "5\u00bd", "5"),
            ("'<answer>5½</answer>' against 5", "<answer>5\u00bd</answer>", "5"),
            ("'5²' against 5", "the answer is 5\u00b2", "5"),
            ("'5٤' against 5", "5\u0664", "5"),
            ("'1_000' against 0 (read as 000)", "1_000", "0"),
            ("'1_000' against 1", "1_000", "1"),
            ("'1_000' against 1000", "1_000", "1000"),
            ("'0/0' against 0", "0/0", "0"),
            ("'\\frac{0}{0}' against 0", "\\boxed{\\frac{0}{0}}", "0"),
            ("'1/0.0' against 0", "<answer>1/0.0</answer>", "0"),
            ("'5 \\div 0' against 0", "<answer>5 \\div 0</answer>", "0"),
        ]
        for mode, call in zip(("plain", "math-verify screened"), _both_modes(completion, reference), strict=True)
    ),
    *(
        Case(f"numeric ({mode}): {name} still reads", call, [1.0])
        for name, completion, reference in [
            ("'x_1 = 5' against 5", "so x_1 = 5", "5"),
            ("'5.5' against 11/2", "<answer>5.5</answer>", "\\frac{11}{2}"),
            ("'1/0.5' against 2 (not a zero)", "1/0.5 = 2", "2"),
            ("'1.5/0.5' against 3 (read as 5)", "<answer>1.5/0.5</answer>", "3"),
        ]
        for mode, call in zip(("plain", "math-verify screened"), _both_modes(completion, reference), strict=True)
    ),
    *(
        Case(
            f"numeric ({mode}): reference {ref!r}",
            lambda tmp, ref=ref, verify=verify: (
                _numeric_verified("5", ref)(tmp)
                if verify
                else numeric_answer_reward(None, ["5"], [ref], use_math_verify=False)
            ),
            (ValueError, r"column 'answer', row 0: .* holds no answer: every record needs a reference answer"),
        )
        for ref in EMPTY_REFERENCES
        for mode, verify in (("plain", False), ("math-verify", True))
    ),
    *(
        Case(
            f"numeric ({mode}): reference {ref!r} (an undefined value)",
            lambda tmp, ref=ref, verify=verify: (
                _numeric_verified("0", ref)(tmp)
                if verify
                else numeric_answer_reward(None, ["0"], [ref], use_math_verify=False)
            ),
            (ValueError, r"column 'answer', row 0: .* holds a division by zero: no answer equals it"),
        )
        for ref in ["0/0", "\\frac{1}{0}"]
        for mode, verify in (("plain", False), ("math-verify", True))
    ),
    Case(
        "numeric+math-verify: '1_000' against 1 (math-verify read 1)",
        lambda tmp: numeric_answer_reward(None, ["1_000"], ["1"], use_math_verify=True),
        [0.0],
        needs_math_verify=True,
    ),
    Case(
        "numeric+math-verify: '0/0' against 0 (the verdict hung on the hash seed)",
        lambda tmp: numeric_answer_reward(None, ["0/0", "<answer>0/0</answer>"], ["0", "0"], use_math_verify=True),
        [0.0, 0.0],
        needs_math_verify=True,
    ),
    *(
        Case(f"{reward}: a str subclass whose methods raise", lambda tmp, call=call: call(), [1.0])
        for reward, call in [
            ("countdown", lambda: countdown_reward(None, [_HostileStr(_STR_TEXT)], [[2, 3]], [5])),
            ("numeric", lambda: numeric_answer_reward(None, [_HostileStr(_STR_TEXT)], ["3"], use_math_verify=False)),
            ("format", lambda: format_reward(None, [_HostileStr(_STR_TEXT)])),
            ("format (in a message)", lambda: format_reward(None, [[{"content": _HostileStr(_STR_TEXT)}]])),
            ("format (a message that is the str)", lambda: format_reward(None, [[_HostileStr(_STR_TEXT)]])),
            ("format (in a part)", lambda: format_reward(None, [[{"content": [{"text": _HostileStr(_STR_TEXT)}]}]])),
        ]
    ),
    Case("completion_text: 1,000,000 messages (bounded reads)", _reads(_million_messages), ("", True)),
    Case("completion_text: 1,000,000 text parts (bounded reads)", _reads(_million_parts), ("", True)),
    Case("completion_text: 10,000 messages of 1,000,000 characters", _reads(_shared_megabyte_messages), ("", True)),
    *(
        Case(f"{reward}: 1,000,000 messages", lambda tmp, call=call: call(_MILLION), [0.0])
        for reward, call in REWARDS
        if reward != "numeric+math-verify"
    ),
]
"""Answers the built-in check read wrongly, references that hold no answer or an undefined one, a str subclass
that overrides its methods, and completions too big to read whole."""
_STR_TEXT = "<think>2 and 3</think><answer>2+3</answer>"
_MILLION = [{"role": "assistant", "content": "<answer>5</answer>"}] * 1_000_000


# ------------------------------------------------------------------------------- data files, read as a task

_ROW = {"prompt": "2+2?", "answer": "4"}
DATA_FILE_CASES = [  # each error names the file, the line (or record) and, for a value, the column
    Case(
        "file: a line that is not UTF-8 (Latin-1)",
        _records(
            _jsonl(_ROW).encode() + json.dumps({"prompt": "café", "answer": "4"}, ensure_ascii=False).encode("latin-1")
        ),
        (ValueError, r"records.jsonl, line 2, column 16: byte 0xe9 is not UTF-8 .*iconv"),
    ),
    Case(
        "file: UTF-16",
        _records(_jsonl(_ROW).encode("utf-16")),
        (ValueError, r"records.jsonl is UTF-16 .*save it as UTF-8"),
    ),
    Case(
        "file: a UTF-8 byte-order mark (read as UTF-8)",
        _records(b"\xef\xbb\xbf" + _jsonl(_ROW).encode()),
        ([{"prompt": "2+2?", "answer": "4"}], []),
    ),
    Case(
        "file: a record nested 100,000 deep",
        _records('{"prompt": "x", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}\n"),
        (ValueError, r"records.jsonl, line 1: nested more than 64 lists or objects deep"),
    ),
    Case(
        "file: an extra column nested 500 deep",
        _records('{"prompt": "x", "answer": "4", "meta": ' + "[" * 500 + "]" * 500 + "}\n"),
        (ValueError, r"records.jsonl, line 1: nested more than 64"),
    ),
    Case(
        "file: an answer of 5,000 digits",
        _records('{"prompt": "x", "answer": ' + "9" * 5000 + "}\n"),
        (ValueError, r"records.jsonl, line 1: holds a number too long to read \(value has 5000 digits"),
    ),
    Case(
        "file: an answer of 201 digits",
        _records('{"prompt": "x", "answer": ' + "9" * 201 + "}\n"),
        (ValueError, r"line 1 \(record 0\): column 'answer' \(numeric_answer_reward\): .* has more than 100 digits"),
    ),
    Case(
        "file: an answer that is an object",
        _records(_jsonl(_ROW, {"prompt": "x", "answer": {"value": 4}})),
        (
            ValueError,
            r"records.jsonl, line 2 \(record 1\): column 'answer' .*\(dict\) is neither a number nor a string",
        ),
    ),
    Case(
        "file: an answer that is a list",
        _records(_jsonl({"prompt": "x", "answer": [4]})),
        (ValueError, r"line 1 \(record 0\): column 'answer' .*\[4\] \(list\) is neither"),
    ),
    Case(
        "file: an answer Infinity",
        _records('{"prompt": "x", "answer": Infinity}\n'),
        (ValueError, r"line 1 \(record 0\): column 'answer' .*inf \(float\) is not finite"),
    ),
    Case(
        "file: an answer 1e999 (read as infinity)",
        _records('{"prompt": "x", "answer": 1e999}\n'),
        (ValueError, r"line 1 \(record 0\): column 'answer' .*inf \(float\) is not finite"),
    ),
    Case(
        "file: an answer null",
        _records('{"prompt": "x", "answer": null}\n'),
        (ValueError, r"line 1 \(record 0\): column 'answer' .*is null"),
    ),
    Case(
        "file: a line of 17 MiB",
        _records('{"prompt": "' + "x" * (17 * 2**20) + '", "answer": "4"}\n'),
        (ValueError, r"records.jsonl, line 1: longer than 16 MiB"),
    ),
    Case(
        "file: a JSON array in Latin-1",
        _records(
            json.dumps([{"prompt": "café", "answer": "4"}], ensure_ascii=False).encode("latin-1"), name="records.json"
        ),
        (ValueError, r"records.json, line 1, column 17: byte 0xe9 is not UTF-8"),
    ),
    Case(
        "file: a JSON array nested 100,000 deep",
        _records("[" * 100_000 + "]" * 100_000, name="records.json"),
        (ValueError, r"records.json: nested more than 64"),
    ),
    Case(
        "file: a JSON array with a syntax error on line 3",
        _records('[\n{"prompt": "x", "answer": "4"},\n{"prompt": }\n]', name="records.json"),
        (ValueError, r"records.json, line 3, column 12: not valid JSON"),
    ),
    Case(
        "file: a parquet file of random bytes",
        _records(bytes(range(256)) * 4, name="records.parquet"),
        (ValueError, r"records.parquet cannot be read as a parquet file \(ArrowInvalid"),
    ),
    Case(
        "file: a Countdown target '1e9999999'",
        _records(_jsonl({"prompt": "x", "numbers": [3, 3], "target": "1e9999999"}), rewards=["countdown"]),
        (
            ValueError,
            r"line 1 \(record 0\): column 'target' \(countdown_reward\): '1e9999999' \(str\) is not an integer",
        ),
    ),
    Case(
        "file: Countdown numbers '33'",
        _records(_jsonl({"prompt": "x", "numbers": "33", "target": 6}), rewards=["countdown"]),
        (ValueError, r"line 1 \(record 0\): column 'numbers' \(countdown_reward\): '33' \(str\) is not a list"),
    ),
    Case(
        "file: Countdown numbers [3.5, 3]",
        _records(
            _jsonl({"prompt": "x", "numbers": [3, 3]}, {"prompt": "y", "numbers": [3.5, 3], "target": 6}).replace(
                '"numbers": [3, 3]}', '"numbers": [3, 3], "target": 6}'
            ),
            rewards=["countdown"],
        ),
        (ValueError, r"line 2 \(record 1\): column 'numbers' .*holds 3.5 \(float\) at position 0: not an integer"),
    ),
]
"""Hostile data files read as a task: refused when read, before any model loads, with the file and line named."""


BAD_INPUTS: list[Case] = (
    _hostile_cases()
    + _reference_cases()
    + PROTOCOL_CASES
    + FILE_CASES
    + REFERENCE_COLUMN_CASES
    + COMPLETION_TYPE_CASES
    + _screen_cases()
    + DATA_FILE_CASES
    + EDGE_CASES
)
"""All hostile inputs of this module (tried / clean is reported in docs/train.md, "Robustness")."""


def check(case: Case, tmp: Path) -> None:
    """Run one case with the empty folder ``tmp``; raise AssertionError unless it is handled cleanly."""
    if isinstance(case.expect, tuple) and isinstance(case.expect[0], type) and issubclass(case.expect[0], Exception):
        kind, pattern = case.expect
        with pytest.raises(kind, match=pattern):
            case.call(tmp)
        return
    got = case.call(tmp)
    if all(isinstance(v, float) for v in case.expect) and any(v != v for v in case.expect):  # NaN expected
        assert [v != v for v in got] == [v != v for v in case.expect] and all(v == v for v in got if v == v)
    else:
        assert got == case.expect


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_is_handled_cleanly(case, tmp_path):
    if case.needs_math_verify and not HAS_MATH_VERIFY:
        pytest.skip("math-verify is not installed (pip install 'lightning-reasonattn[math]')")
    check(case, tmp_path)


def test_docs_report_the_count():
    """docs/train.md's Robustness paragraph states this module's count."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "train.md").read_text(encoding="utf-8")
    match = re.search(r"(\d+) hostile inputs, (\d+) handled cleanly", text)
    assert match, "docs/train.md has no 'N hostile inputs, M handled cleanly' sentence"
    assert int(match[1]) == len(BAD_INPUTS) == int(match[2])
