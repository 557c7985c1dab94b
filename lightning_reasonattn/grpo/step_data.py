"""The data of one GRPO step as it moves through ``rollout``, ``score`` and ``update`` (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..rewards.protocol import RewardLog
from ..rollout.sampling import SampledBatch


@dataclass
class Rollouts(SampledBatch):
    """This rank's completions of one step (``B`` rows: its prompts, ``G`` completions each), as ``rollout`` made them.

    The token ids and masks are those of [`SampledBatch`][lightning_reasonattn.rollout.sampling.SampledBatch]
    (``ids``, ``attention_mask``, ``response_mask``, ``completion_mask``, ``truncated``).

    Attributes:
        prompts: ``[B]`` the prompt of every completion (each prompt repeated ``G`` times).
        columns: the dataset columns, one value per completion.
        texts: the decoded completions.
        seconds: how long the rollout took.
        step: the prompt stream's batch, which keys the random draws (``None``: the process RNG).
        prompt_index: ``[B]`` global index of each row's prompt in the step's batch.
        sample_index: ``[B]`` index of each row in its group (``0 .. G - 1``).
    """

    prompts: list
    columns: dict
    texts: list[str]
    seconds: float
    step: int | None = None
    prompt_index: torch.Tensor | None = None
    sample_index: torch.Tensor | None = None


@dataclass
class Completed:
    """Per-completion values of the whole step: every rank's rows, in rank order (``[N]`` each).

    Attributes:
        rewards: the weighted reward of each completion (NaN where no reward function applies).
        per_function: ``{function name: [N]}`` unweighted rewards (NaN where the function returned ``None``).
        lengths: completion lengths in tokens.
        truncated: bool, no end token within ``max_new_tokens``.
        loss_tokens: the tokens each completion puts in the loss.
    """

    rewards: torch.Tensor
    per_function: dict[str, torch.Tensor]
    lengths: torch.Tensor
    truncated: torch.Tensor
    loss_tokens: torch.Tensor


@dataclass
class Scored:
    """What ``score`` (and, with one iteration, the update's first forward) found for this rank's rollouts.

    Attributes:
        rewards: ``[B]`` this rank's weighted rewards (NaN where no reward function applies).
        per_function: ``{function name: [B]}`` unweighted rewards (NaN where the function returned ``None``).
        advantages: ``[B]`` group-normalised advantages.
        step: the per-completion values over all ranks (for the logs and ``scale_rewards: batch``).
        old_logp: ``[B, T]`` log-probabilities before the update; ``None``: the update's first forward measures
            them (one iteration).
        entropy: ``[B, T]`` token entropies.
        gamma: ``[B, T]`` the credit's advantage multipliers.
        traces: the RhythmTrace (or ``None``) of each block of rows, in row order.
        log: what this rank's reward functions logged.
    """

    rewards: torch.Tensor
    per_function: dict[str, torch.Tensor]
    advantages: torch.Tensor
    step: Completed | None = None
    old_logp: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    gamma: torch.Tensor | None = None
    traces: list = field(default_factory=list)
    log: RewardLog = field(default_factory=RewardLog)
