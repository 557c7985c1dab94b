"""What a built-in task is, in one table: its generator's splits, its prompt styles, its default reward and the
prompts the survey samples from it.

``TASKS[name]`` is read by RhythmGRPO's settings and data (which styles a task takes, its splits, its reward when
``rewards.functions`` is empty) and by ``reasonattn survey`` (its ``--prompts NAME`` sets). Any other task name is a
local file or folder of records (see [`load_prompts`][lightning_reasonattn.tasks.load_prompts]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .arithmetic import STYLES as ARITHMETIC_STYLES
from .arithmetic import arithmetic_splits, generate_arithmetic
from .countdown import countdown_splits, generate_countdown
from .splits import DEFAULT_DIFFICULTY
from .word_problems import STYLES as WORD_PROBLEM_STYLES
from .word_problems import generate_word_problems, word_problem_splits

Records = list[dict[str, Any]]
TaskStyle = Literal["r1", "short", "plain"]
"""Every prompt style of the built-in tasks: ``r1`` (think / answer tags), ``short`` (arithmetic: the number only),
``plain`` (word problems: the question alone)."""


@dataclass(frozen=True)
class Task:
    """A built-in task.

    Attributes:
        splits: ``splits(n_train, n_test, seed, *, chat, **options) -> (train, test)`` disjoint records.
        styles: the prompt styles its generator takes (``options`` then include ``difficulty`` and ``style``);
            empty: a task with one prompt and no difficulty preset.
        rewards: the built-in reward functions that score it (``rewards.functions`` when left empty).
        survey_prompts: ``fn(n, seed, chat) -> records``: the prompts ``reasonattn survey --prompts NAME`` samples.
    """

    splits: Callable[..., tuple[Records, Records]]
    styles: tuple[str, ...]
    rewards: tuple[str, ...]
    survey_prompts: Callable[[int, int, bool], Records]

    def generate_splits(
        self, n_train: int, n_test: int, seed: int, *, chat: bool, difficulty: int, style: str
    ) -> tuple[Records, Records]:
        """``(train, test)``, passing ``difficulty`` and ``style`` only to a task that takes them."""
        options = {"difficulty": difficulty, "style": style} if self.styles else {}
        return self.splits(n_train, n_test, seed, chat=chat, **options)


SURVEY_ARITHMETIC_DIFFICULTY = 3
"""The difficulty of ``reasonattn survey --prompts arithmetic``: a notch above training's default, for longer answers
(the surveys in docs/rhythm.md were measured on it)."""


def arithmetic_survey_prompts(n: int, seed: int, chat: bool) -> Records:
    """``n`` arithmetic problems (difficulty 3, R1-style reasoning prompt); see ``generate_arithmetic``."""
    return generate_arithmetic(n, seed, difficulty=SURVEY_ARITHMETIC_DIFFICULTY, chat=chat, style="r1")


def countdown_survey_prompts(n: int, seed: int, chat: bool) -> Records:
    """``n`` Countdown problems (3 to 4 numbers, R1-style prompt); see ``generate_countdown``."""
    return generate_countdown(n, seed, chat=chat)


def word_problem_survey_prompts(n: int, seed: int, chat: bool) -> Records:
    """``n`` two-step word problems (difficulty 2, the question alone); see ``generate_word_problems``."""
    return generate_word_problems(n, seed, difficulty=DEFAULT_DIFFICULTY, chat=chat, style="plain")


TASKS: dict[str, Task] = {
    "arithmetic": Task(arithmetic_splits, ARITHMETIC_STYLES, ("numeric",), arithmetic_survey_prompts),
    "countdown": Task(countdown_splits, (), ("countdown",), countdown_survey_prompts),
    "word_problems": Task(word_problem_splits, WORD_PROBLEM_STYLES, ("numeric",), word_problem_survey_prompts),
}
"""The built-in tasks by name."""
