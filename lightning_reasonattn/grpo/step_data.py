"""The data of one GRPO step as it moves through ``rollout``, ``score`` and ``update`` (plain dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..reward_protocol import RewardLog


@dataclass
class Rollouts:
    prompts: list  # [B] prompt of every completion (each prompt repeated G times)
    columns: dict  # dataset columns, one value per completion
    ids: torch.Tensor  # [B, P + T] prompt (left-padded) + completion (right-padded)
    mask: torch.Tensor  # [B, P + T] attention mask
    completion_mask: torch.Tensor  # [B, T] bool
    truncated: torch.Tensor  # [B] bool
    texts: list[str]
    seconds: float
    step: int | None = None  # the prompt stream's batch: keys the random draws (None: the process RNG)
    prompt_index: torch.Tensor | None = None  # [B] global index of each row's prompt in the step's batch
    sample_index: torch.Tensor | None = None  # [B] index of each row in its group (0 .. G - 1)

    @property
    def width(self) -> int:
        return self.completion_mask.shape[1]


@dataclass
class Completed:
    """Per-completion values of the whole step: every rank's rows, in rank order (``[N]`` each)."""

    rewards: torch.Tensor
    per_function: dict[str, torch.Tensor]
    lengths: torch.Tensor
    truncated: torch.Tensor
    loss_tokens: torch.Tensor  # tokens each completion puts in the loss


@dataclass
class Scored:
    rewards: torch.Tensor  # [B] this rank's
    per_function: dict[str, torch.Tensor]
    advantages: torch.Tensor  # [B]
    step: Completed | None = None  # over all ranks
    old_logp: torch.Tensor | None = None  # [B, T]; None: the update's first forward measures (one iteration)
    entropy: torch.Tensor | None = None  # [B, T]
    gamma: torch.Tensor | None = None  # [B, T]
    traces: list = field(default_factory=list)  # RhythmTrace (or None) per row block, in row order
    log: RewardLog = field(default_factory=RewardLog)  # what this rank's reward functions logged
