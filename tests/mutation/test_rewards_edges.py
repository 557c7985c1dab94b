"""rewards/: edge cases the mutation run (`make mutate`) found untested, against hand-worked values (issue 26).

- Countdown with a repeated number: an answer that uses a number more or fewer times than given must score 0 (a check
  by set instead of multiset would pay for it: a reward-hacking hole);
- GSM8K ``####`` answers where ``####`` appears more than once: the last one holds the answer.
"""

import math
from fractions import Fraction

import pytest
import torch

from lightning_reasonattn.rewards import countdown_reward, extract_numeric_answer, numeric_answer_reward
from lightning_reasonattn.rewards.builtin import countdown_equation_correct
from lightning_reasonattn.rewards.references import numeric_reference

NAN = math.nan

# ------------------------------------------------------------------------------------------ countdown multiset


@pytest.mark.parametrize(
    ("expression", "numbers", "target", "correct"),
    [
        ("2 + 3 + 3", [2, 3, 3], 8, True),
        ("3 + 2 + 3", [3, 2, 3], 8, True),  # any order
        ("2 + 3 + 3 + 3", [2, 3, 3], 11, False),  # 3 used three times, given twice
        ("4 + 8", [4, 4, 8], 12, False),  # 4 used once, given twice
        ("3", [3, 3], 3, False),  # the only number, but once of two
        ("3 + 3 + 3", [3, 3], 9, False),
        ("5 * 5 - 5", [5, 5, 5], 20, True),
        ("5 * 5 - 5 = 20", [5, 5, 5], 20, True),  # one side uses the numbers
        ("5 * 5 - 5 - 5 + 5 = 20", [5, 5, 5], 20, False),
        ("6 + 6 + 3", [6, 3], 15, False),
        ("6 + 3", [6, 6, 3], 9, False),
    ],
)
def test_countdown_uses_each_given_number_as_often_as_given(expression, numbers, target, correct):
    assert countdown_equation_correct(expression, numbers, target) is correct
    reward = countdown_reward(None, [f"<answer>{expression}</answer>"], [numbers], [target])
    assert reward == [1.0 if correct else 0.0]


# ------------------------------------------------------------------------------------------ GSM8K ####


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Janet sells 3 eggs. #### 12", " 12"),
        ("first try #### 12\nno, recount: #### 15", " 15"),  # the last '####' holds the answer
        ("#### 1 #### 2 #### 3", " 3"),
        ("####7####8", "8"),
        ("the answer is 42", "the answer is 42"),  # no marker: the whole text
        ("#### 12 ####", None),  # nothing after the last marker
        ("#### 12 #### \n ", None),
        ("#### 5 \\boxed{7} #### 9", "7"),  # a boxed answer wins over '####'
        ("#### 5 <answer>#### 6 #### 7</answer> #### 8", " 7"),  # inside the last answer block
    ],
)
def test_extract_numeric_answer_reads_after_the_last_marker(text, expected):
    assert extract_numeric_answer(text) == expected


def test_repeated_markers_in_references_and_completions():
    assert numeric_reference("Step 1: 3 * 4 = 12 #### 12\nCorrection: 3 * 5 = 15 #### 15")[1] == Fraction(15)
    completions = ["#### 12 then #### 15", "#### 15 then #### 12", "#### 15"]
    answers = ["#### 10 #### 15"] * 3
    assert numeric_answer_reward(None, completions, answers, use_math_verify=False) == [1.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------ math-verify's child


def serve_lines(monkeypatch, lines):
    """The child's program run in this process (its stdin and stdout replaced): the lines it writes."""
    import io
    import json
    import logging
    import sys

    from lightning_reasonattn.rewards.math_verify_worker import serve

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(json.dumps(line) + "\n" for line in lines)))
    monkeypatch.setattr(sys, "stdout", out)
    try:
        serve()
        disabled = logging.root.manager.disable
    finally:
        logging.disable(logging.NOTSET)
    return [json.loads(line) for line in out.getvalue().splitlines()], disabled


def test_the_math_verify_child_answers_one_line_per_pair(monkeypatch):
    pytest.importorskip("math_verify", reason="math-verify is not installed (pip install 'lightning-reasonattn[math]')")
    pairs = [["$\\sqrt{2}$", "$\\frac{2}{\\sqrt{2}}$"], ["$3$", "$4$"], ["$1/2$", "$0.5$"], ["$x$", "\\frac{"]]
    answers, disabled = serve_lines(monkeypatch, pairs)
    assert answers == ["ready", True, False, True, False]
    import logging

    assert disabled == logging.WARNING  # math-verify's log lines are silenced; errors would still show


def test_the_math_verify_child_reports_a_failed_import(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "math_verify", None)  # import math_verify raises
    answers, _ = serve_lines(monkeypatch, [["$1$", "$1$"]])
    assert answers == [{"error": "ModuleNotFoundError: import of math_verify halted; None in sys.modules"}]


# ------------------------------------------------------------------------------------------ protocol


def test_nanstd_along_a_dimension_by_hand():
    from lightning_reasonattn.rewards.protocol import nanstd

    x = torch.tensor([[1.0, 3.0, NAN], [2.0, NAN, NAN], [0.0, 4.0, 8.0]])
    # row 0: mean 2, squares 2, / 1; row 1: one value: 0; row 2: mean 4, squares 32, / 2
    assert nanstd(x, 1).flatten().tolist() == pytest.approx([math.sqrt(2), 0.0, 4.0])
    assert nanstd(x, 1).shape == (3, 1)
    assert nanstd(x).item() == pytest.approx(math.sqrt(sum((v - 3) ** 2 for v in (1, 3, 2, 0, 4, 8)) / 5))


def test_reward_metrics_by_hand():
    from lightning_reasonattn.rewards.protocol import RewardLog, reward_metrics

    total = torch.tensor([1.0, 1.0, 0.0, 1.0, 2.0, NAN])  # groups of 2: equal, unequal, one value (std 0)
    out = reward_metrics(total, {}, group_size=2)
    assert out["frac_reward_zero_std"].item() == pytest.approx(2 / 3)
    assert set(out) == {"reward", "reward_std", "frac_reward_zero_std"}  # no log: nothing more
    log = RewardLog()
    log.log_metric("parsed", 1.0)
    log.log_metric("parsed", 0.0)
    assert reward_metrics(total, {}, log=log)["parsed"].item() == 0.5


def test_combined_reward_passes_the_trainer_keywords_on():
    from lightning_reasonattn.rewards import combine_rewards

    seen = {}

    def reward(prompts, completions, completion_ids=None, trainer_state=None, **kwargs):
        seen.update(completion_ids=completion_ids, trainer_state=trainer_state)
        return [1.0] * len(completions)

    combined = combine_rewards([reward])
    assert combined(["p"], ["c"], completion_ids=[[5, 6]], trainer_state="state") == [1.0]
    assert seen == {"completion_ids": [[5, 6]], "trainer_state": "state"}


def test_a_power_at_the_start_of_an_answer_has_no_base():
    """The look-back for a power's base stops at the start of the text (it must not wrap round to its end)."""
    from lightning_reasonattn.rewards.math_screen import _base

    assert _base(" ^2 ", 1) == ""
    assert _base("  ^27", 2) == ""
    assert _base("x ^2", 2) == "x"


@pytest.mark.parametrize(
    ("text", "base"),
    [
        ("\\cos(x)^2", "\\cos(x)"),  # a group and the command before it
        ("\\Gamma(5)^2", "\\Gamma(5)"),  # upper-case letters too
        ("a+(b)^2", "(b)"),
        ("ab_{1}^2", "_{1}"),  # a subscript's group
        ("2+ (3 )^2", "(3 )"),
        ("(1+(2))^3", "(1+(2))"),  # nested: the group that closes there
        ("x)^2", "x)"),  # a group that never opens: everything before
        ("AB^2", "AB"),
        ("1.5^2", "1.5"),
    ],
)
def test_the_base_of_a_power_by_hand(text, base):
    from lightning_reasonattn.rewards.math_screen import _base

    assert _base(text, text.index("^")) == base


def test_countdown_numbers_range():
    from lightning_reasonattn.rewards.references import countdown_numbers

    assert countdown_numbers([0, 10**12 - 1]) == [0, 10**12 - 1]  # 0 to MAX_DIGITS (12) digits
    for bad in ([10**12], [-1]):
        with pytest.raises(ValueError, match="could never be used"):
            countdown_numbers(bad)


@pytest.mark.parametrize(
    ("prompt", "shown"),
    [
        ("y" * 61, "'" + "y" * 60 + "...'"),  # 60 characters, then '...'
        ("z" * 60, "'" + "z" * 60 + "'"),
        ([{"role": "user", "content": "2+2?"}], "'2+2?'"),  # a chat prompt: its text
        (7, "'7'"),  # another type: its repr
        ([{"role": "user", "content": 3}], "\"[{'role': 'user', 'content': 3}]\""),  # no text in it: its repr
    ],
)
def test_a_failing_reward_names_its_prompt_in_60_characters(prompt, shown):
    from lightning_reasonattn.rewards import RewardError, score_completions

    def inf_reward(prompts, completions, **kwargs):
        return [math.inf] * len(completions)

    with pytest.raises(RewardError) as err:
        score_completions([inf_reward], None, [prompt], ["c"])
    assert f"at prompt index 0 (prompt {shown}):" in str(err.value)


def test_power_digits_by_hand():
    from lightning_reasonattn.rewards.math_screen import _power_digits

    assert _power_digits("{12}", "(300)") == 600  # braces, parentheses and spaces around either are ignored
    assert _power_digits(" 007 ", " {2} ") == 2  # leading zeros do not count
    assert _power_digits("0", "50") == 50
    assert _power_digits("x", "3") == 0 and _power_digits("2", "n") == 0  # not two plain numbers


def test_reward_values_as_tensors_and_arrays():
    import numpy as np

    from lightning_reasonattn.rewards import RewardError, score_completions

    def flat(prompts, completions, **kwargs):
        return torch.tensor([0.25, 1.0])

    def array(prompts, completions, **kwargs):
        return np.array([0.5, 2.0])

    def column(prompts, completions, **kwargs):
        return torch.ones(len(completions), 1)

    total, parts = score_completions([flat, array], None, ["p", "q"], ["a", "b"])
    assert total.tolist() == [0.75, 3.0] and parts["array"].tolist() == [0.5, 2.0]
    with pytest.raises(RewardError, match="'column' returned Tensor, not a list: return one float per completion"):
        score_completions([column], None, ["p", "q"], ["a", "b"])


def test_a_failure_no_single_prompt_reproduces_says_so():
    from lightning_reasonattn.rewards import RewardError, score_completions

    def batch_only(prompts, completions, **kwargs):
        if len(completions) > 1:
            raise RuntimeError("batch too large")
        return [0.0]

    with pytest.raises(RewardError) as err:
        score_completions([batch_only], None, ["q0", "q1"], ["a", "b"])
    assert "raised RuntimeError: batch too large (no single prompt reproduces it). Fix it" in str(err.value)


def test_the_answer_column_reads_latex_only_with_math_verify():
    from lightning_reasonattn.rewards.references import numeric_answer_column

    assert numeric_answer_column("#### 12") == (" 12", Fraction(12))
    with pytest.raises(ValueError):
        numeric_answer_column("\\sqrt{2}", use_math_verify=False)
    pytest.importorskip("math_verify", reason="math-verify is not installed (pip install 'lightning-reasonattn[math]')")
    for use in (None, True):  # installed and not turned off
        assert numeric_answer_column("\\sqrt{2}", use_math_verify=use) == ("\\sqrt{2}", None)


def test_countdown_target_texts_by_hand():
    from lightning_reasonattn.rewards.references import countdown_target

    assert countdown_target("12.0") == countdown_target(" 98 ") - 86 == Fraction(12)
    assert countdown_target("9" * 100) == Fraction(10**100 - 1)  # MAX_NUMBER_DIGITS digits: accepted
    for too_long in ("9" * 101, "1" + " " * 400, " " * 380 + "9" * 30):  # 101 digits; 401 characters
        with pytest.raises(ValueError, match="has over 100 digits"):
            countdown_target(too_long)


def test_reward_names_of_callables_without_a_name():
    import functools

    from lightning_reasonattn.rewards.protocol import reward_name

    class Scorer:
        def __call__(self, prompts, completions, **kwargs):
            return [0.0] * len(completions)

    assert reward_name(Scorer()) == "Scorer"
    assert reward_name(functools.partial(countdown_reward, format_score=0.1)) == "countdown_reward"
    assert reward_name(countdown_reward) == "countdown_reward"


def test_integer_references_stay_exact_and_refuse_booleans():
    import numpy as np

    from lightning_reasonattn.rewards.references import countdown_target

    assert countdown_target(10**20 + 1) == Fraction(10**20 + 1)  # not through a float (2**53)
    assert countdown_target(Fraction(12)) == 12 and countdown_target(np.int64(7)) == 7
    for value in (True, np.bool_(True)):
        with pytest.raises(ValueError):
            countdown_target(value)


def test_record_check_applies_the_partial_s_keywords():
    import functools

    from lightning_reasonattn.rewards.references import record_check

    def plain(prompts, completions, **kwargs):  # no reference_columns: checks nothing
        return [0.0] * len(completions)

    assert record_check([plain]) is None
    strict = record_check([plain, functools.partial(functools.partial(numeric_answer_reward), use_math_verify=False)])
    strict({"answer": "#### 12"})
    with pytest.raises(ValueError, match="column 'answer' \\(numeric_answer_reward\\)"):
        strict({"answer": "\\sqrt{2}"})  # LaTeX needs math-verify, turned off by the partial
    pytest.importorskip("math_verify", reason="math-verify is not installed (pip install 'lightning-reasonattn[math]')")
    record_check([numeric_answer_reward])({"answer": "\\sqrt{2}"})  # math-verify reads it
