"""A bad column or completion given to a built-in reward is refused with the function's name, the column's name and the
row: what a user reads to find the bad value in a data file of thousands of rows. (Mutants that changed these names,
or the name of the column, passed every earlier test.)"""

import re

import pytest

from lightning_reasonattn.rewards import countdown_reward, format_reward, numeric_answer_reward

COMPLETIONS = ["<answer>1 + 2</answer>", "<answer>3</answer>"]
ONE_EACH = "must hold one value per completion (2)"


def countdown(**columns):
    return countdown_reward(["p", "q"], COMPLETIONS, **({"numbers": [[1, 2], [3]], "target": [3, 3]} | columns))


def numeric(**columns):
    return numeric_answer_reward(["p", "q"], COMPLETIONS, use_math_verify=False, **({"answer": ["3", "3"]} | columns))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: countdown(numbers=[[1, 2]]), f"countdown_reward: column 'numbers' {ONE_EACH}"),
        (lambda: countdown(target=[3]), f"countdown_reward: column 'target' {ONE_EACH}"),
        (lambda: countdown(numbers=[[1, 2], "x"]), "countdown_reward: column 'numbers', row 1:"),
        (lambda: countdown(target=[3, "many"]), "countdown_reward: column 'target', row 1:"),
        (lambda: numeric(answer=["3"]), f"numeric_answer_reward: column 'answer' {ONE_EACH}"),
        (lambda: numeric(answer=["3", "three"]), "numeric_answer_reward: column 'answer', row 1:"),
    ],
    ids=[
        "countdown numbers length",
        "countdown target length",
        "countdown numbers row",
        "countdown target row",
        "numeric answer length",
        "numeric answer row",
    ],  # fmt: skip
)
def test_a_bad_column_is_named_with_its_function_and_row(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()


@pytest.mark.parametrize(
    ("reward", "name"),
    [
        (lambda completions: countdown_reward(["p", "q"], completions, [[1, 2], [3]], [3, 3]), "countdown_reward"),
        (
            lambda completions: numeric_answer_reward(["p", "q"], completions, ["3", "3"], use_math_verify=False),
            "numeric_answer_reward",
        ),  # fmt: skip
        (lambda completions: format_reward(["p", "q"], completions), "format_reward"),
    ],
    ids=["countdown", "numeric", "format"],
)
def test_a_completion_of_another_type_is_named_with_its_function_and_row(reward, name):
    with pytest.raises(TypeError, match=f"^{name}: completion 1: "):
        reward(["fine", 42])


def test_the_columns_are_paired_row_by_row():
    # one right and one wrong completion per row, the columns in the same order: a column read out of step pays both
    assert countdown_reward(["p", "q"], ["<answer>1 + 2</answer>", "<answer>4 - 1</answer>"],
                            numbers=[[1, 2], [4, 2]], target=[3, 2]) == [1.0, 0.0]  # fmt: skip
