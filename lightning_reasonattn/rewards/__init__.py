"""Reward functions for RL from verifiable rewards, with TRL's protocol.

A reward function is ``fn(prompts, completions, **kwargs) -> list[float | None]``, called with keywords as TRL's
``GRPOTrainer`` calls it: ``prompts``, ``completions`` (strings, or ``[{"role": "assistant", "content": ...}]``
for conversational prompts), ``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric`` and every
dataset column, one value per completion. It returns one float per completion, or ``None`` where it does not
apply. The protocol, its checks and how ``None`` combines are in
[`lightning_reasonattn.rewards.protocol`][lightning_reasonattn.rewards.protocol] (re-exported here);
[`completion_text`][lightning_reasonattn.rewards.completions.completion_text] reads both completion forms.
Functions must accept ``**kwargs``.

Built in, each returning values in ``[0, 1]`` and never raising on a completion, whatever it holds (the bounds
are in [`lightning_reasonattn.rewards.answers`][lightning_reasonattn.rewards.answers]):

- [`countdown_reward`][countdown_reward]: 1.0 when the final equation uses the given ``numbers`` each exactly once and
  equals ``target`` (columns ``numbers``, ``target``). Completions are untrusted input: they are parsed by
  [`parse_arithmetic`][parse_arithmetic], never evaluated.
- [`numeric_answer_reward`][numeric_answer_reward]: 1.0 when the final number equals the ``answer`` column.
- [`format_reward`][format_reward]: 1.0 when the completion is ``<think>...</think><answer>...</answer>``.

[`score_completions`][score_completions] calls several functions with checks and weights;
[`combine_rewards`][combine_rewards] wraps them into one TRL-style function.

Example:
    >>> from lightning_reasonattn.rewards import countdown_reward, format_reward, score_completions
    >>> completions = ["<think>44+19=63</think><answer>44 + 19 + 35</answer>", "<answer>44 * 19</answer>"]
    >>> total, parts = score_completions(
    ...     [countdown_reward, format_reward], [1.0, 0.5], ["p", "p"], completions,
    ...     {"numbers": [[44, 19, 35]] * 2, "target": [98, 98]},
    ... )
    >>> total.tolist(), parts["countdown_reward"].tolist()
    ([1.5, 0.0], [1.0, 0.0])
"""

from .answers import (
    MATH_VERIFY_TIMEOUT,
    MAX_NUMBER_DIGITS,
    MAX_SCAN_CHARS,
    extract_answer_block,
    extract_numeric_answer,
    parse_number,
)
from .builtin import (
    ArithmeticParseError,
    countdown_equation_correct,
    countdown_reward,
    extract_countdown_expression,
    format_reward,
    matches_think_answer_format,
    numeric_answer_reward,
    parse_arithmetic,
)
from .completions import completion_text, conversational_completions
from .protocol import (
    TRAINER_KEYWORDS,
    RewardError,
    RewardFunc,
    RewardLog,
    TrainerState,
    combine_rewards,
    required_columns,
    reward_name,
    score_completions,
)

BUILTIN_REWARDS = {"countdown": countdown_reward, "numeric": numeric_answer_reward, "format": format_reward}
"""The built-in reward functions by the name ``rewards.functions`` gives them in a config."""

__all__ = [
    "BUILTIN_REWARDS",
    "MATH_VERIFY_TIMEOUT",
    "MAX_NUMBER_DIGITS",
    "MAX_SCAN_CHARS",
    "TRAINER_KEYWORDS",
    "ArithmeticParseError",
    "RewardError",
    "RewardFunc",
    "RewardLog",
    "TrainerState",
    "combine_rewards",
    "completion_text",
    "conversational_completions",
    "countdown_equation_correct",
    "countdown_reward",
    "extract_answer_block",
    "extract_countdown_expression",
    "extract_numeric_answer",
    "format_reward",
    "matches_think_answer_format",
    "numeric_answer_reward",
    "parse_arithmetic",
    "parse_number",
    "required_columns",
    "reward_name",
    "score_completions",
]
