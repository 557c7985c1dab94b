"""TRL's reward-function protocol: how a trainer calls reward functions, checks them and combines them.

A reward function is called with keywords only, exactly as TRL's ``GRPOTrainer`` calls it::

    fn(prompts=..., completions=..., completion_ids=..., trainer_state=..., log_extra=..., log_metric=...,
       **dataset_columns) -> list[float | None]

- ``prompts[i]`` is the prompt of ``completions[i]`` (a prompt with G completions appears G times).
- ``completions[i]`` is a string when the prompt is a string, and ``[{"role": "assistant", "content": text}]``
  when the prompt is a list of messages (see
  [`conversational_completions`][lightning_reasonattn.rewards.completions.conversational_completions]).
- ``completion_ids[i]`` is the list of the completion's token ids (up to and including its end token).
- ``trainer_state`` is a [`TrainerState`][TrainerState] (``global_step``, ``max_steps``, ``epoch``), ``None`` outside
  a trainer.
- ``log_extra(column, values)`` adds a column to the logged completions; ``log_metric(name, value)`` logs a
  scalar (see [`RewardLog`][RewardLog]).
- every dataset column arrives as a keyword holding one value per completion.

A function returns one value per completion: a finite number, or ``None`` where it does not apply (TRL's
convention). [`score_completions`][score_completions] weights and sums the functions that apply, as TRL does
(``nansum``); a completion for which every function returns ``None`` gets a total reward of NaN, which
[`group_advantages`][lightning_reasonattn.grpo.advantages.group_advantages] leaves out of its group's mean and std and
gives advantage 0 (TRL's rule since 0.24: the completion teaches nothing and biases nothing). Anything else
(an exception, a wrong count, NaN, inf, a string) stops with a [`RewardError`][RewardError] that names the function,
the prompt index and the fix.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers as _numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .completions import brief_repr, completion_text

RewardFunc = Callable[..., Sequence[float | None]]
"""``fn(prompts, completions, **kwargs) -> list[float | None]``."""

TRAINER_KEYWORDS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
"""Keywords the trainer passes to every reward function; a dataset column must not use these names."""


class RewardError(RuntimeError):
    """A reward function failed; the message names the function, the prompt index and the fix."""


@dataclass(frozen=True)
class TrainerState:
    """Where training stands, passed to reward functions as ``trainer_state`` (the fields of TRL's that matter).

    Attributes:
        global_step: optimizer steps taken so far.
        max_steps: optimizer steps the run will take (``-1``: not set).
        epoch: the current epoch.
    """

    global_step: int = 0
    max_steps: int = -1
    epoch: float = 0.0


class RewardLog:
    """What reward functions log through ``log_metric`` and ``log_extra`` during one scoring call.

    Attributes:
        metrics: ``{name: [values]}`` from ``log_metric(name, value)``; the trainer logs each mean.
        extra: ``{column: [values]}`` from ``log_extra(column, values)``, one value per completion; the trainer
            adds them to the completions it writes.

    Example:
        >>> log = RewardLog()
        >>> log.log_metric("parsed", 0.5); log.log_metric("parsed", 1.0); log.log_extra("gold", ["4", "5"])
        >>> log.metric_means(), log.extra
        ({'parsed': 0.75}, {'gold': ['4', '5']})
    """

    def __init__(self):
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list] = {}

    def log_metric(self, name: str, value: float) -> None:
        """Record one scalar value of metric ``name``."""
        self.metrics.setdefault(str(name), []).append(float(value))

    def log_extra(self, column: str, values: Sequence) -> None:
        """Record the values of column ``column``, one per completion (several calls extend it)."""
        self.extra.setdefault(str(column), []).extend(values)

    def metric_means(self) -> dict[str, float]:
        """``{name: mean of the values logged}``."""
        return {name: sum(values) / len(values) for name, values in self.metrics.items() if values}


# --------------------------------------------------------------------------------------------- plumbing


def reward_name(fn: Callable) -> str:
    """The name under which a reward function's values are reported.

    Args:
        fn: a reward function; a ``functools.partial`` reports the name of the function it wraps.

    Returns:
        ``fn.__name__``, else the name of its type (for callable objects).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", None) or type(fn).__name__


def required_columns(fn: Callable) -> list[str]:
    """The dataset columns ``fn`` cannot run without: its parameters with no default, less the trainer's keywords.

    Args:
        fn: a reward function (a ``functools.partial`` counts what it leaves unbound).

    Returns:
        Column names, e.g. ``["answer"]`` for ``numeric_answer_reward``; ``[]`` when the signature cannot be read.

    Example:
        >>> def my_reward(prompts, completions, solution, scale=1.0, **kwargs): ...
        >>> required_columns(my_reward)
        ['solution']
    """
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [
        p.name
        for p in parameters
        if p.kind in kinds and p.default is inspect.Parameter.empty and p.name not in TRAINER_KEYWORDS
    ]


def _check_funcs(funcs: Sequence[Callable] | Callable, weights: Sequence[float] | None) -> tuple[list, list]:
    funcs = [funcs] if callable(funcs) else list(funcs)
    if not funcs:
        raise ValueError("No reward function given: pass at least one, e.g. [countdown_reward].")
    for fn in funcs:
        if not callable(fn):
            raise TypeError(f"Reward function {fn!r} is not callable: pass functions fn(prompts, completions, **kw).")
    weights = [1.0] * len(funcs) if weights is None else list(weights)
    if len(weights) != len(funcs):
        raise ValueError(f"Got {len(weights)} weights for {len(funcs)} reward functions: pass one weight each.")
    for fn, w in zip(funcs, weights, strict=True):
        if not is_finite_number(w):
            raise ValueError(f"Weight {brief_repr(w)} of reward function {reward_name(fn)!r} is not a finite number.")
    return funcs, [float(w) for w in weights]


def _unique_names(funcs: Sequence[Callable]) -> list[str]:
    names: list[str] = []
    for fn in funcs:
        name, k = reward_name(fn), 1
        while name in names:
            name, k = f"{reward_name(fn)}_{k}", k + 1
        names.append(name)
    return names


def _row(kwargs: Mapping[str, Any], i: int) -> dict[str, Any]:
    return {k: v[i : i + 1] if isinstance(v, (list, tuple)) else v for k, v in kwargs.items()}


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a real number that is finite (an int too large for a float counts as not finite)."""
    try:
        return isinstance(value, _numbers.Real) and math.isfinite(value)
    except OverflowError:
        return False


def _short(value: Any) -> str:
    try:
        text = completion_text(value) if isinstance(value, (str, list, tuple)) else repr(value)
    except TypeError:
        text = repr(value)
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _call_checked(fn: Callable, name: str, kwargs: dict, n: int) -> torch.Tensor:
    """``[n]`` float32 values of one function, NaN where it returned None."""
    prompts = kwargs["prompts"]
    try:
        values = fn(**kwargs)
    except Exception as err:
        where = "(no single prompt reproduces it)"
        for i in range(n):  # find the first prompt index that fails on its own
            try:
                fn(**_row(kwargs, i))
            except Exception:
                where = f"at prompt index {i} (prompt {_short(prompts[i])})"
                break
        raise RewardError(
            f"Reward function {name!r} raised {type(err).__name__}: {err} {where}. Fix it so that it returns a"
            " float for every completion (e.g. 0.0 when the answer cannot be parsed, None when it does not apply)."
        ) from err
    if isinstance(values, torch.Tensor):
        values = values.detach().reshape(-1).tolist() if values.dim() <= 1 else values
    elif hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()  # numpy arrays
    if not isinstance(values, (list, tuple)):
        raise RewardError(
            f"Reward function {name!r} returned {type(values).__name__}, not a list: return one float per"
            f" completion ({n} here)."
        )
    if len(values) != n:
        raise RewardError(
            f"Reward function {name!r} returned {len(values)} values for {n} completions (first wrong prompt"
            f" index {min(len(values), n)}): return exactly one float per completion."
        )
    for i, v in enumerate(values):
        if v is not None and not is_finite_number(v):
            raise RewardError(
                f"Reward function {name!r} returned {brief_repr(v)} at prompt index {i} (prompt {_short(prompts[i])}):"
                " rewards must be finite numbers, or None where the function does not apply; return 0.0 for a"
                " completion that cannot be scored."
            )
    return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float32)


def score_completions(
    funcs: Sequence[RewardFunc] | RewardFunc,
    weights: Sequence[float] | None,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: Mapping[str, Sequence[Any]] | None = None,
    *,
    completion_ids: Sequence[Sequence[int]] | None = None,
    trainer_state: Any = None,
    log: RewardLog | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Call every reward function on a batch with TRL's keywords, check what it returns, and weight the results.

    Args:
        funcs: reward functions ``fn(prompts, completions, **kwargs) -> list[float | None]``.
        weights: one finite weight per function; ``None`` weights each by 1.
        prompts: ``[n]`` prompts, ``prompts[i]`` being the prompt of ``completions[i]``.
        completions: ``[n]`` completions (strings, or ``[{"role": "assistant", "content": ...}]`` lists).
        columns: dataset columns passed to every function as keywords, each a list of ``n`` values (any other
            value is passed as it is).
        completion_ids: ``[n]`` token-id lists, passed as ``completion_ids`` (``None`` outside a trainer).
        trainer_state: passed as ``trainer_state`` (a [`TrainerState`][TrainerState]; ``None`` outside a trainer).
        log: receives what the functions log through ``log_metric`` and ``log_extra`` (``None``: discarded).

    Returns:
        ``(total, per_function)``: ``total`` is the ``[n]`` float32 weighted sum over the functions that apply
        (``nansum``), NaN where none applies; ``per_function`` maps each function's name (made unique with
        ``_1``, ``_2`` suffixes) to its unweighted ``[n]`` rewards, NaN where it returned ``None``.

    Raises:
        RewardError: a function raised (the message names the first prompt index that fails alone), returned
            the wrong number of values, or a value that is neither a finite number nor ``None``.
        ValueError: mismatched lengths of ``prompts``, ``completions``, a column, ``completion_ids`` or
            ``weights``, or a column named like one of [`TRAINER_KEYWORDS`][TRAINER_KEYWORDS].

    Example:
        >>> def only_long(prompts, completions, **kwargs):  # applies to completions of 3+ characters
        ...     return [float(c.endswith("!")) if len(c) > 2 else None for c in completions]
        >>> def polite(prompts, completions, **kwargs):
        ...     return [None if c == "" else float("please" in c) for c in completions]
        >>> total, parts = score_completions([only_long, polite], [1.0, 0.5], ["p"] * 3, ["please!", "ok", ""])
        >>> total.tolist(), parts["only_long"].tolist()
        ([1.5, 0.0, nan], [1.0, nan, nan])
    """
    funcs, weights = _check_funcs(funcs, weights)
    prompts, completions, columns = list(prompts), list(completions), dict(columns or {})
    n = len(completions)
    if len(prompts) != n:
        raise ValueError(f"Got {len(prompts)} prompts for {n} completions: repeat each prompt once per completion.")
    for key, value in columns.items():
        if key in TRAINER_KEYWORDS:
            raise ValueError(
                f"Column {key!r} clashes with the keyword {key!r} the trainer passes to reward functions: rename it."
            )
        if isinstance(value, (list, tuple)) and len(value) != n:
            raise ValueError(f"Column {key!r} has {len(value)} values for {n} completions: give one per completion.")
    if completion_ids is not None and len(completion_ids) != n:
        raise ValueError(f"Got {len(completion_ids)} completion_ids for {n} completions: give one list per completion.")
    log = RewardLog() if log is None else log
    kwargs = dict(
        prompts=prompts,
        completions=completions,
        completion_ids=None if completion_ids is None else [list(ids) for ids in completion_ids],
        trainer_state=trainer_state,
        log_extra=log.log_extra,
        log_metric=log.log_metric,
        **columns,
    )
    per_function: dict[str, torch.Tensor] = {}
    for name, fn in zip(_unique_names(funcs), funcs, strict=True):
        per_function[name] = _call_checked(fn, name, kwargs, n)
    values = torch.stack(list(per_function.values()), 1)  # [n, functions]
    total = (values * torch.tensor(weights, dtype=torch.float32)).nansum(1)  # float32 whatever the default dtype
    total[values.isnan().all(1)] = math.nan  # no function applies: no reward (see the module docstring)
    return total, per_function


def combine_rewards(funcs: Sequence[RewardFunc], weights: Sequence[float] | None = None) -> RewardFunc:
    """One TRL-style reward function: the weighted sum of ``funcs``, checked as in
    [`score_completions`][score_completions].

    Args:
        funcs: reward functions.
        weights: one finite weight per function; ``None`` weights each by 1.

    Returns:
        ``combined_reward(prompts, completions, **kwargs) -> list[float | None]`` (``None`` where no function
        applies), with attributes ``reward_funcs`` and ``reward_weights``. It passes on the trainer's
        keywords (``completion_ids``, ``trainer_state``, ``log_extra``, ``log_metric``) when given them.

    Raises:
        ValueError, TypeError: no functions, a non-callable, or weights of the wrong length or not finite.

    Example:
        >>> from lightning_reasonattn.rewards import combine_rewards, format_reward, numeric_answer_reward
        >>> reward = combine_rewards([numeric_answer_reward, format_reward], [1.0, 0.5])
        >>> reward(prompts=["2+2?"], completions=["<think>easy</think><answer>4</answer>"], answer=["4"])
        [1.5]
    """
    funcs, weights = _check_funcs(funcs, weights)

    def combined_reward(prompts, completions, **kwargs) -> list[float | None]:
        hooks = {key: kwargs.pop(key, None) for key in ("log_extra", "log_metric")}
        trainer = {key: kwargs.pop(key) for key in ("completion_ids", "trainer_state") if key in kwargs}
        log = RewardLog()
        total, _ = score_completions(funcs, weights, prompts, completions, kwargs, **trainer, log=log)
        if callable(hooks["log_metric"]):
            for name, values in log.metrics.items():
                for value in values:
                    hooks["log_metric"](name, value)
        if callable(hooks["log_extra"]):
            for column, values in log.extra.items():
                hooks["log_extra"](column, values)
        return [None if math.isnan(v) else v for v in total.tolist()]

    combined_reward.reward_funcs = funcs
    combined_reward.reward_weights = weights
    return combined_reward


# ---------------------------------------------------------------------------------------------- logging


def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Unbiased std over the non-NaN values of ``x`` (0 where there are fewer than two), as TRL's ``nanstd``.

    Args:
        x: values, NaN where there is none.
        dim: the dimension to reduce (kept, size 1); ``None``: all of ``x``, a scalar.

    Returns:
        The std: ``sqrt(sum((x - nanmean) ** 2) / (count - 1))`` over the non-NaN values.
    """
    valid = ~x.isnan()
    if dim is None:
        count, squares = valid.sum(), ((x - x.nanmean()) ** 2).nansum()
    else:
        count, squares = (
            valid.sum(dim, keepdim=True),
            ((x - x.nanmean(dim, keepdim=True)) ** 2).nansum(dim, keepdim=True),
        )
    return torch.where(count > 1, (squares / (count - 1).clamp_min(1)).sqrt(), torch.zeros_like(squares))


def reward_metrics(
    total: torch.Tensor,
    per_function: Mapping[str, torch.Tensor],
    group_size: int | None = None,
    log: RewardLog | None = None,
) -> dict[str, torch.Tensor]:
    """The reward metrics of one batch, with TRL's names, over the values that exist (NaN-aware).

    Args:
        total: ``[n]`` total rewards, NaN where no function applies.
        per_function: ``{name: [n]}`` rewards, NaN where the function returned ``None``.
        group_size: ``G``; with it, ``frac_reward_zero_std`` (the share of groups whose rewards all agree).
        log: what the functions logged with ``log_metric`` (each logged as its mean, under its own name).

    Returns:
        ``reward``, ``reward_std``, (``frac_reward_zero_std``), ``rewards/<name>/mean`` and ``/std`` (over the
        completions the function applies to), and the logged metrics: scalar tensors (NaN when no value exists).

    Example:
        >>> nan = float("nan")
        >>> out = reward_metrics(torch.tensor([1.0, nan, 0.0, 1.0]), {"f": torch.tensor([1.0, nan, 0.0, 1.0])}, 2)
        >>> tuple(round(out[k].item(), 3) for k in ("reward", "reward_std", "frac_reward_zero_std", "rewards/f/mean"))
        (0.667, 0.577, 0.5, 0.667)
    """
    values = {"reward": total.nanmean(), "reward_std": nanstd(total)}
    if group_size is not None:
        groups = total.view(-1, group_size)
        values["frac_reward_zero_std"] = (nanstd(groups, 1) == 0).float().mean()
    for name, rewards in per_function.items():
        values[f"rewards/{name}/mean"] = rewards.nanmean()
        values[f"rewards/{name}/std"] = nanstd(rewards)
    for name, value in (log.metric_means() if log is not None else {}).items():
        values[name] = torch.tensor(value)
    return values
