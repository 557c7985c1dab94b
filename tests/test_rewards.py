"""Reward functions: the safe Countdown parser, numeric answers, the format check and the checked plumbing."""

import builtins
import contextlib
import functools
import math
import re
from fractions import Fraction

import pytest
import torch

from lightning_reasonattn import rewards
from lightning_reasonattn.rewards import (
    ArithmeticParseError,
    RewardError,
    answers,
    combine_rewards,
    completion_text,
    countdown_reward,
    extract_countdown_expression,
    format_reward,
    numeric_answer_reward,
    parse_arithmetic,
    score_completions,
)
from lightning_reasonattn.tasks.arithmetic import MAX_DEPTH, MAX_DIGITS, MAX_EXPRESSION_CHARS, MAX_OPERANDS

# ------------------------------------------------------------------------------------------ parser


@pytest.mark.parametrize(
    ("expr", "value", "operands"),
    [
        ("(93 - 43) + 1", Fraction(51), [93, 43, 1]),
        ("2 + 3 * 4", Fraction(14), [2, 3, 4]),
        ("(2 + 3) * 4", Fraction(20), [2, 3, 4]),
        ("10 - 4 - 3", Fraction(3), [10, 4, 3]),  # left associative
        ("24 / 4 / 2", Fraction(3), [24, 4, 2]),
        ("7 / 2", Fraction(7, 2), [7, 2]),
        ("100 / 3 * 3", Fraction(100), [100, 3, 3]),  # exact, no float rounding
        ("-3 + 5", Fraction(2), [3, 5]),
        ("2 * -3", Fraction(-6), [2, 3]),
        ("  ( 1+2 )\t*3 ", Fraction(9), [1, 2, 3]),
        ("6 × 7 ÷ 3 − 4", Fraction(10), [6, 7, 3, 4]),  # ×, ÷ and the minus sign are accepted
    ],
)
def test_parse_arithmetic_values(expr, value, operands):
    assert parse_arithmetic(expr) == (value, operands)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("__import__('os').system('x')", "character '_'"),
        ("9**9**9", "exponentiation"),
        ("9^9", "character '^'"),
        ("1e9", "character 'e'"),
        ("1.5 + 2", "character '.'"),
        ("٣ + ٣", "character '٣'"),  # Arabic-Indic digit
        ("３ + 3", "character '３'"),  # full-width digit
        ("", "empty"),
        ("   ", "empty"),
        ("1 / (2 - 2)", "division by zero"),
        ("(1 + 2", "unbalanced"),
        ("1 + 2)", "unexpected ')'"),
        ("1 +", "expected a number"),
        ("* 3", "expected a number"),
        ("3 4", "unexpected 4"),
        ("()", "expected a number"),
    ],
)
def test_parse_arithmetic_rejects(expr, reason):
    with pytest.raises(ArithmeticParseError, match=re.escape(reason)):
        parse_arithmetic(expr)


def test_parse_arithmetic_limits():
    assert parse_arithmetic("(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1))[0] == 1
    with pytest.raises(ArithmeticParseError, match="nesting"):
        parse_arithmetic("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH)
    with pytest.raises(ArithmeticParseError, match="nesting"):
        parse_arithmetic("-" * MAX_DEPTH + "1")
    assert parse_arithmetic("+".join(["1"] * MAX_OPERANDS))[0] == MAX_OPERANDS
    with pytest.raises(ArithmeticParseError, match="more than"):
        parse_arithmetic("+".join(["1"] * (MAX_OPERANDS + 1)))
    assert parse_arithmetic("9" * MAX_DIGITS)[0] == 10**MAX_DIGITS - 1
    with pytest.raises(ArithmeticParseError, match="digits"):
        parse_arithmetic("9" * (MAX_DIGITS + 1))
    with pytest.raises(ArithmeticParseError, match="longer than"):
        parse_arithmetic("1" + " " * MAX_EXPRESSION_CHARS)
    with pytest.raises(ArithmeticParseError, match="string"):
        parse_arithmetic(None)


# ---------------------------------------------------------------------------------------- countdown


@contextlib.contextmanager
def no_code_execution():
    """Make eval, exec, compile and __import__ raise (and record any call) while the block runs."""
    calls = []
    names = ("eval", "exec", "compile", "__import__")
    saved = {name: getattr(builtins, name) for name in names}

    def forbid(name):
        def call(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called")

        return call

    for name in names:
        setattr(builtins, name, forbid(name))
    try:
        yield calls
    finally:
        for name, fn in saved.items():
            setattr(builtins, name, fn)


HOSTILE = [
    "__import__('os').system('x')",
    "<answer>__import__('os').system('x')</answer>",
    "9**9**9",
    "<answer>9**9**9</answer>",
    "<answer>9^9^9</answer>",
    "(" * 10_000 + "3 + 3" + ")" * 10_000,
    "<answer>" + "(" * 10_000 + "3 + 3" + ")" * 10_000 + "</answer>",
    "<answer>" + "(" * 400 + "3 + 3" + ")" * 400 + "</answer>",  # short enough, too deep
    "9*" * 500_000 + "9",  # a megabyte of digits and operators
    "<answer>" + "3+" * 500_000 + "3</answer>",
    "<answer>" * 100_000,
    "<answer>٣ + ٣</answer>",
    "<answer>３ + ３</answer>",
    "<answer>1e9</answer>",
    "<answer>3.0 + 3</answer>",
    "<answer>lambda: 6</answer>",
    "<answer></answer>",
    "",
    "   \n\n  ",
    None,
    [],
    [{"role": "assistant", "content": None}],
]


@pytest.mark.parametrize("completion", HOSTILE, ids=range(len(HOSTILE)))
def test_countdown_hostile_completions_score_zero_without_running_code(completion):
    # Bounded by construction: only the last MAX_SCAN_CHARS characters are read, at most MAX_EXPRESSION_CHARS
    # are parsed, nesting stops at MAX_DEPTH, so each call returns promptly.
    with no_code_execution() as calls:
        result = countdown_reward(["p"], [completion], numbers=[[3, 3]], target=[6])
    assert result == [0.0]
    assert calls == []


def test_countdown_correct_answers():
    numbers, target = [44, 19, 35], 98
    completions = [
        "<think>44 + 19 = 63, 63 + 35 = 98</think>\n<answer>44 + 19 + 35</answer>",
        "<answer>   35+44 +  19   </answer>",  # extra spaces, any order
        "<answer>44 + 19 + 35 = 98</answer>",  # an equation with the target
        "<answer>98 = (44 + 19) + 35</answer>",
        "<answer>44 × 2</answer> no wait <answer>44 + 19 + 35</answer>",  # the last block counts
        "<think>try</think>\nAnswer: 44 + 19 + 35.",  # no tags: the last line, after its ':'
        [{"role": "assistant", "content": "<answer>44+19+35</answer>"}],  # chat format
    ]
    n = len(completions)
    assert countdown_reward(["p"] * n, completions, [numbers] * n, [target] * n) == [1.0] * n


def test_countdown_wrong_answers():
    numbers, target = [44, 19, 35], 98
    completions = [
        "<answer>44 + 19 + 35</answer> then <answer>44 + 19</answer>",  # the last block is wrong
        "<answer>44 + 54</answer>",  # a number not given
        "<answer>44 + 19 + 35 + 0</answer>",  # an extra number
        "<answer>44 + 44 + 10</answer>",  # 44 twice
        "<answer>44 + 19 + 35 = 97</answer>",  # a false equation
        "<answer>44 + 19 + 35 = 98 = 98</answer>",  # two '='
        "<answer>44 + 19 + 35",  # an unclosed tag: truncated
        "44 + 19 + 35 is the answer",  # words on the last line
        "<answer>44 + 19 - 35</answer>",
    ]
    n = len(completions)
    assert countdown_reward(["p"] * n, completions, [numbers] * n, [target] * n) == [0.0] * n


def test_countdown_multiset_and_fractions():
    # duplicates must be used as often as given; intermediate fractions are exact
    reward = countdown_reward(None, ["<answer>3 + 3</answer>", "<answer>3 * 2</answer>"], [[3, 3]] * 2, [6, 6])
    assert reward == [1.0, 0.0]
    assert countdown_reward(None, ["<answer>(1 + 2 / 3) * 3</answer>"], [[1, 2, 3, 3]], [5]) == [1.0]
    assert countdown_reward(None, ["<answer>(1 + 2 / 3) * 3</answer>"], [[1, 2, 3, 3]], ["5"]) == [1.0]


def test_countdown_format_score_and_column_errors():
    reward = functools.partial(countdown_reward, format_score=0.1)
    completions = ["<answer>3 + 3</answer>", "<answer>3 - 3</answer>", "3 - 3", "<answer>oops</answer>"]
    assert reward(None, completions, [[3, 3]] * 4, [6] * 4) == [1.0, 0.1, 0.0, 0.1]
    with pytest.raises(ValueError, match="'numbers' must hold one value per completion"):
        countdown_reward(None, ["a", "b"], [[3, 3]], [6, 6])
    with pytest.raises(ValueError, match=r"column 'target', row 0: 'six' \(str\) is not an integer"):
        countdown_reward(None, ["a"], [[3, 3]], ["six"])


def test_extract_countdown_expression():
    assert extract_countdown_expression("x\n<answer> 1 + 2 </answer>\n") == " 1 + 2 "
    assert extract_countdown_expression("a\nResult: 1 + 2.\n\n") == "1 + 2"
    assert extract_countdown_expression("<answer>1 + 2") is None
    assert extract_countdown_expression("") is None


# ----------------------------------------------------------------------------------------- numeric


def test_numeric_answer_reward_builtin():
    cases = [
        ("The total is $1,234.", "Janet sells... #### 1,234", 1.0),
        ("so \\boxed{1234} is it", "#### 1234", 1.0),
        ("<answer> 1234 </answer>", 1234, 1.0),
        ("1233", "#### 1234", 0.0),
        ("it is 42.0", 42, 1.0),
        ("\\boxed{\\frac{3}{4}}", "0.75", 1.0),
        ("<answer>3/4</answer>", "\\boxed{\\frac{3}{4}}", 1.0),
        ("about 0.3333333", "1/3", 1.0),  # within rel_tol 1e-6
        ("about 0.333", "1/3", 0.0),
        ("the answer is -5.", "-5", 1.0),
        ("٤٢", "42", 0.0),  # no ASCII digits: no number
        ("no idea", "42", 0.0),
        (None, "42", 0.0),
        ([{"role": "assistant", "content": "#### 7"}], "7", 1.0),
    ]
    completions = [c for c, _, _ in cases]
    answers = [a for _, a, _ in cases]
    got = numeric_answer_reward(None, completions, answers, use_math_verify=False)
    assert got == [r for _, _, r in cases]


def test_numeric_answer_reward_errors(monkeypatch):
    with pytest.raises(ValueError, match="not a plain number"):
        numeric_answer_reward(None, ["2"], ["\\sqrt{2}"], use_math_verify=False)
    with pytest.raises(ValueError, match=r"column 'answer', row 0: is null \(None\)"):
        numeric_answer_reward(None, ["2"], [None], use_math_verify=False)
    with pytest.raises(ValueError, match="not finite"):
        numeric_answer_reward(None, ["2"], [math.nan], use_math_verify=False)
    with pytest.raises(ValueError, match="'answer' must hold one value per completion"):
        numeric_answer_reward(None, ["2", "3"], ["2"], use_math_verify=False)
    monkeypatch.setattr(answers, "has_math_verify", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'lightning-reasonattn\[math\]'"):
        numeric_answer_reward(None, ["2"], ["2"], use_math_verify=True)


class FakeWorker:
    """Stands in for the math-verify process: equal when the texts match without their $ signs."""

    def __init__(self):
        self.calls = []

    def equal(self, gold, answer, timeout):
        self.calls.append((gold, answer, timeout))
        return gold.strip("$ ") == answer.strip("$ ")


def test_numeric_answer_reward_defers_to_math_verify(monkeypatch):
    worker = FakeWorker()
    monkeypatch.setattr(answers, "has_math_verify", lambda: True)
    monkeypatch.setattr(answers, "math_verify_worker", lambda: worker)
    completions = ["<answer>\\sqrt{2}</answer>", "<answer>\\sqrt{3}</answer>", "<answer>2</answer>"]
    got = numeric_answer_reward(None, completions, ["\\sqrt{2}", "\\sqrt{2}", "2"], math_verify_timeout=0.3)
    assert got == [1.0, 0.0, 1.0]
    assert worker.calls[0] == ("$\\sqrt{2}$", "$\\sqrt{2}$", 0.3)  # both wrapped as LaTeX, with the time limit
    assert len(worker.calls) == 2  # the plain number 2 was settled without math-verify
    assert numeric_answer_reward(None, ["<answer>9^{9^{9}}</answer>"], ["\\sqrt{2}"]) == [0.0]
    assert len(worker.calls) == 2  # a refused candidate never reaches math-verify


ORDINARY_ANSWERS = [
    "$\\frac{\\pi}{4}$", "$\\sqrt{2}$", "$2\\sqrt{2}$", "$(1, 2)$", "the answer is 2(845+1)", "$x^2+1$", "$10^{9}$",
    "$3^{9999}$", "$2^{2024}$", "$(-2)^{2024}$", "$5!$", "$\\binom{10}{3}$", "$1.5e10$", "$e^{i\\pi}$", "x != 3",
    "$\\boxed{\\frac{\\sqrt{2}}{2}}$", "$2^{10} \\cdot 3^{5}$", "$1-\\sin^{2}(x)$", "$\\sin(x)^{2}$",
    "$\\left(\\frac{1}{2}\\right)^{99}$", "$a\\!b$", "$\\cos(\\pi/9)$", "1,234,567", "$\\mathrm{e}^{9999}$",
]  # fmt: skip


@pytest.mark.parametrize("answer", ORDINARY_ANSWERS)
def test_the_math_verify_screen_lets_ordinary_answers_through(answer):
    from lightning_reasonattn.rewards.math_screen import exploding_shape

    assert exploding_shape(answer) is None


# ------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>reason</think><answer>42</answer>", 1.0),
        ("  <think>\nreason\n</think>\n\n<answer>\n42\n</answer>\n", 1.0),
        ("reason</think>\n<answer>42</answer>", 1.0),  # the prompt ended with <think>
        ("<think></think><answer>42</answer>", 1.0),
        ("<think>a</think><answer> </answer>", 0.0),  # blank answer
        ("<think>a</think>text<answer>42</answer>", 0.0),
        ("<think>a</think><answer>42</answer> trailing", 0.0),
        ("preamble <think>a</think><answer>42</answer>", 0.0),
        ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0),
        ("<think><think>a</think><answer>1</answer>", 0.0),
        ("<answer>1</answer><think>a</think>", 0.0),
        ("<think>a<answer>1</answer></think>", 0.0),
        ("<think>a</think>", 0.0),
        ("", 0.0),
        (None, 0.0),
        ("<think>" + "</think><answer>" * 100_000, 0.0),  # adversarial, linear time
    ],
)
def test_format_reward(text, expected):
    assert format_reward(None, [text]) == [expected]
    assert format_reward(None, [[{"role": "assistant", "content": text}]]) == [expected]


# ------------------------------------------------------------------------------------------ plumbing


def test_completion_text():
    assert completion_text("abc") == "abc"
    assert completion_text(None) == ""
    assert completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "a\nb"
    assert completion_text({"role": "assistant", "content": "x"}) == "x"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "p"}, {"type": "image"}]}]
    assert completion_text(parts) == "p"
    with pytest.raises(TypeError, match="is text or a list of .* messages, not int"):
        completion_text(42)


def constant(value):
    def reward(prompts, completions, **kwargs):
        return [value] * len(completions)

    reward.__name__ = f"constant_{value}"
    return reward


def test_score_completions_weights_and_names():
    def length_reward(prompts, completions, **kwargs):
        return [float(len(c)) for c in completions]

    prompts, completions = ["p", "p"], ["a", "abc"]
    total, parts = score_completions(
        [length_reward, length_reward, functools.partial(length_reward)], [1.0, 0.5, -2], prompts, completions
    )
    assert total.dtype == torch.float32
    assert total.tolist() == [1 + 0.5 - 2, 3 + 1.5 - 6]
    assert list(parts) == ["length_reward", "length_reward_1", "length_reward_2"]
    assert parts["length_reward_1"].tolist() == [1.0, 3.0]  # unweighted
    total, _ = score_completions(length_reward, None, prompts, completions)
    assert total.tolist() == [1.0, 3.0]


def test_score_completions_passes_trl_keywords():
    seen = {}

    def spy(prompts, completions, **kwargs):
        seen.update(kwargs, prompts=prompts, completions=completions)
        kwargs["log_metric"]("spy/seen", 2.0)
        kwargs["log_extra"]("note", ["x", "y"])
        return torch.tensor([0.25, 0.75])  # a tensor is accepted too

    state = rewards.TrainerState(global_step=3, max_steps=10, epoch=0.0)
    log = rewards.RewardLog()
    total, _ = score_completions(
        [spy], None, ["p0", "p1"], ["c0", "c1"], {"answer": ["1", "2"]},
        completion_ids=[[5, 6], [7]], trainer_state=state, log=log,
    )  # fmt: skip
    assert total.tolist() == [0.25, 0.75]
    hooks = {k: seen.pop(k) for k in ("log_metric", "log_extra")}
    assert all(callable(h) for h in hooks.values())
    assert seen == {
        "answer": ["1", "2"],
        "prompts": ["p0", "p1"],
        "completions": ["c0", "c1"],
        "completion_ids": [[5, 6], [7]],
        "trainer_state": state,
    }
    assert log.metrics == {"spy/seen": [2.0]} and log.extra == {"note": ["x", "y"]}
    with pytest.raises(ValueError, match="Column 'trainer_state' clashes with the keyword"):
        score_completions([spy], None, ["p"], ["c"], {"trainer_state": [1]})
    with pytest.raises(ValueError, match="Got 1 completion_ids for 2 completions"):
        score_completions([spy], None, ["p0", "p1"], ["c0", "c1"], completion_ids=[[1]])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0], r"'bad' returned 1 values for 3 completions \(first wrong prompt index 1\)"),
        ([1.0, 2.0, 3.0, 4.0], r"'bad' returned 4 values for 3 completions"),
        ([1.0, math.nan, 0.0], r"'bad' returned nan at prompt index 1 \(prompt 'q1'\)"),
        ([1.0, 0.0, math.inf], r"'bad' returned inf at prompt index 2"),
        ([None, "0", 0.0], r"'bad' returned '0' at prompt index 1"),  # None is allowed, a string is not
        ([1.0, "1.0", 0.0], r"'bad' returned '1.0' at prompt index 1"),
        (1.0, r"'bad' returned float, not a list"),
    ],
)
def test_score_completions_rejects_bad_values(values, message):
    def bad(prompts, completions, **kwargs):
        return values

    with pytest.raises(RewardError, match=message):
        score_completions([constant(1.0), bad], None, ["q0", "q1", "q2"], ["a", "b", "c"])


def test_score_completions_names_the_failing_prompt():
    def fragile(prompts, completions, **kwargs):
        return [1.0 / len(c) for c in completions]  # ZeroDivisionError on an empty completion

    with pytest.raises(RewardError, match=r"'fragile' raised ZeroDivisionError.*prompt index 2 \(prompt 'q2'\)"):
        score_completions([fragile], None, ["q0", "q1", "q2", "q3"], ["a", "b", "", "d"])

    def batch_only(prompts, completions, **kwargs):
        if len(completions) > 1:
            raise RuntimeError("batch too large")
        return [0.0]

    with pytest.raises(RewardError, match="no single prompt reproduces it"):
        score_completions([batch_only], None, ["q0", "q1"], ["a", "b"])


def test_score_completions_argument_errors():
    with pytest.raises(ValueError, match="No reward function"):
        score_completions([], None, ["p"], ["c"])
    with pytest.raises(TypeError, match="not callable"):
        score_completions(["countdown_reward"], None, ["p"], ["c"])
    with pytest.raises(ValueError, match="2 weights for 1 reward functions"):
        score_completions([format_reward], [1.0, 2.0], ["p"], ["c"])
    with pytest.raises(ValueError, match="Weight nan of reward function 'format_reward'"):
        score_completions([format_reward], [math.nan], ["p"], ["c"])
    with pytest.raises(ValueError, match="2 prompts for 1 completions"):
        score_completions([format_reward], None, ["p", "q"], ["c"])
    with pytest.raises(ValueError, match="Column 'answer' has 1 values for 2 completions"):
        score_completions([format_reward], None, ["p", "q"], ["c", "d"], {"answer": ["1"]})


def test_combine_rewards_trl_call_with_chat_completions():
    reward = combine_rewards([countdown_reward, format_reward], [1.0, 0.5])
    assert reward.reward_weights == [1.0, 0.5] and reward.reward_funcs[0] is countdown_reward
    prompts = [[{"role": "user", "content": "Use [3, 5, 7] to make 22."}]] * 3
    completions = [
        [{"role": "assistant", "content": "<think>3*5=15, +7</think>\n<answer>3 * 5 + 7</answer>"}],
        [{"role": "assistant", "content": "<answer>3 * 5 + 7</answer>"}],
        [{"role": "assistant", "content": "<think>hmm</think><answer>3 + 5 + 7</answer>"}],
    ]
    got = reward(
        prompts=prompts,
        completions=completions,
        numbers=[[3, 5, 7]] * 3,
        target=[22] * 3,
        completion_ids=[[1], [2], [3]],  # extra keywords from a TRL trainer are ignored
        trainer_state=None,
    )
    assert got == [1.5, 1.0, 0.5]
    with pytest.raises(RewardError, match="'countdown_reward' raised TypeError.*prompt index 0"):
        reward(prompts=prompts, completions=completions)  # the numbers and target columns are missing


# ------------------------------------------------------------------------------- bounded math-verify


@pytest.mark.parametrize(
    ("completion", "candidate"),
    [
        ("<answer>\\sqrt{2}</answer>", "$\\sqrt{2}$"),
        ("<answer>$x^2 + y^2$</answer>", "$x^2 + y^2$"),  # two powers side by side are no tower
        ("<answer>10^{-12}</answer>", "$10^{-12}$"),
        ("<answer>5! + 100!</answer>", "$5! + 100!$"),
        ("<answer>((1 + 2) * [3])</answer>", "$((1 + 2) * [3])$"),  # nesting 2
        ("no tags, " + "x" * 300 + " so 42", ("x" * 300 + " so 42")[-answers.MATH_VERIFY_MAX_CHARS :]),
        ("<answer>" + "1" * (answers.MATH_VERIFY_MAX_CHARS + 1) + "</answer>", None),  # too long
        ("<answer>" + "9" * (answers.MAX_NUMBER_DIGITS + 1) + "</answer>", None),
        ("<answer>" + ",".join(["999"] * 40) + "</answer>", None),  # 120 digits once the separators go
        ("<answer>(((1)))</answer>", None),  # nesting 3
        ("<answer>9^{9^{9}}</answer>", None),
        ("<answer>9^9^9</answer>", None),
        ("<answer>2^{ 99999}</answer>", None),
        ("<answer>(10^{10})!</answer>", None),
        ("<answer>1000!</answer>", None),
    ],
)
def test_math_verify_candidate(completion, candidate):
    assert answers.math_verify_candidate(completion) == candidate


def test_math_verify_runs_in_a_process_with_a_hard_time_limit():
    pytest.importorskip("math_verify")
    from lightning_reasonattn.rewards.math_verify_worker import MathVerifyWorker

    worker = MathVerifyWorker()
    try:
        assert worker.equal("$\\sqrt{2}$", "$\\frac{2}{\\sqrt{2}}$", timeout=60) is True
        assert worker.equal("$\\sqrt{2}$", "$\\sqrt{3}$", timeout=60) is False
        first = worker._proc.pid
        # 9^(9^9): an integer of 370 million digits, computed in C where no signal reaches; minutes of work
        assert worker.equal("$42$", "$9^{{9}^{9}}$", timeout=0.5) is False
        assert worker._proc.pid != first  # the child was killed, a new one started
        assert worker.equal("$\\frac{1}{2}$", "$0.5$", timeout=60) is True  # and it answers
    finally:
        worker.close()
    assert worker._proc is None
