"""Hostile inputs to the rewards: every case either gives its documented result or a clear error, never a crash.

:data:`BAD_INPUTS` is the enumerated list (importable: docs/train.md's "Robustness" count and
benchmarks/bench_rewards_hostile.py read it). A case is "clean" when the call returns the expected value, or
raises the expected exception type with a message that names the problem. Three kinds:

- hostile completions (model output) x every built-in reward: the reward must return 0.0, not raise
  (Python's 4300-digit int limit, giant fractions, digit runs with separators, unicode digits, nested braces,
  power towers for math-verify, regex-unfriendly floods, ...);
- misbehaving reward functions under :func:`score_completions` (a clear :class:`RewardError`; ``None`` allowed);
- bad files and reward names (refused when read or resolved, with the fix in the message).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lightning_reasonattn.grpo.data import reward_functions, task_records
from lightning_reasonattn.grpo.settings import RewardSettings, TaskSettings
from lightning_reasonattn.rewards import (
    RewardError,
    countdown_reward,
    format_reward,
    numeric_answer_reward,
    score_completions,
)

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


def _records(text: str, answer_column: str | None = None):
    """Write ``text`` to a JSONL file and read it as a task of the ``numeric`` reward."""

    def call(tmp):
        path = tmp / "records.jsonl"
        path.write_text(text, encoding="utf-8")
        funcs, _ = reward_functions(RewardSettings(["numeric"]), TaskSettings(name=str(path)))
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
        (ValueError, "record 1 has no column 'answer'"),
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
        (ValueError, "record 1 has column 'x'"),
    ),
    Case("file: a record that is not an object", _records(_jsonl(GOOD, "[1, 2]")), (ValueError, "record 1 is list")),
    Case(
        "file: a line that is not JSON", _records(_jsonl(GOOD, "{'prompt': 1}")), (ValueError, "line 2: not valid JSON")
    ),
    Case(
        "file: a prompt that is a number",
        _records(_jsonl({"prompt": 42, "answer": "4"})),
        (ValueError, "record 0 has prompt 42"),
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
            [0.0],
        ),
        Case(
            "numeric: answer of 4400 digits as text",
            lambda tmp: numeric_answer_reward(None, ["42"], ["9" * 4400], use_math_verify=False),
            (ValueError, "not a plain number"),
        ),
        Case(
            "countdown: target of 5000 digits",
            lambda tmp: countdown_reward(None, ["<answer>3+3</answer>"], [[3, 3]], ["9" * 5000]),
            (ValueError, "is not a number"),
        ),
    ]


BAD_INPUTS: list[Case] = _hostile_cases() + _reference_cases() + PROTOCOL_CASES + FILE_CASES
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
