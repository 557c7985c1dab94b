"""Tasks for RL from verifiable rewards: problems generated offline, and local datasets.

- ``countdown``: Countdown (TinyZero protocol), scored by ``countdown_reward``.
- ``arithmetic``: multi-digit arithmetic with a difficulty knob, scored by
  ``numeric_answer_reward``.
- ``word_problems``: short word problems with small numbers (a count that changes over a few steps), scored by
  ``numeric_answer_reward``.
- ``table``: what a built-in task is (its splits, prompt styles, default reward, survey prompts), in one table.
- ``datasets``: prompt templates, [`load_prompts`][load_prompts] for local JSONL, JSON,
  parquet and dataset folders, and [`apply_chat_template`][apply_chat_template].

Every generator is a pure function of its arguments (a private ``random.Random(seed)``) that returns a list of
plain dict records with a ``"prompt"`` and the columns its reward function reads.
"""

from .arithmetic import DIFFICULTY, arithmetic_prompt, arithmetic_splits, generate_arithmetic
from .countdown import (
    countdown_key,
    countdown_prompt,
    countdown_splits,
    generate_countdown,
    reachable_targets,
    reachable_values,
    solve_countdown,
)
from .datasets import SYSTEM_PROMPT, apply_chat_template, load_prompts, r1_messages, r1_prompt
from .table import TASKS, Task
from .word_problems import DIFFICULTY as WORD_PROBLEM_DIFFICULTY
from .word_problems import generate_word_problems, word_problem_prompt, word_problem_splits, worked_answer

__all__ = [
    "DIFFICULTY",
    "SYSTEM_PROMPT",
    "TASKS",
    "Task",
    "WORD_PROBLEM_DIFFICULTY",
    "apply_chat_template",
    "arithmetic_prompt",
    "arithmetic_splits",
    "countdown_key",
    "countdown_prompt",
    "countdown_splits",
    "generate_arithmetic",
    "generate_countdown",
    "generate_word_problems",
    "load_prompts",
    "r1_messages",
    "r1_prompt",
    "reachable_targets",
    "reachable_values",
    "solve_countdown",
    "word_problem_prompt",
    "word_problem_splits",
    "worked_answer",
]
