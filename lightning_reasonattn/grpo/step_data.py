"""What one GRPO step makes, stage by stage: ``rollout -> Rollouts``, ``score -> Scored``, ``update -> Updated``.

Frozen dataclasses: each stage returns a new value and never changes the one it read, so a reader can follow a
value from where it is made to where it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..functional.trace import RhythmTrace
from ..rewards.protocol import RewardLog
from ..rollout.sampling import SampledBatch


@dataclass(frozen=True)
class Rollouts(SampledBatch):
    """This rank's completions of one step (``B`` rows: its prompts, ``G`` completions each), as ``rollout`` made them.

    The token ids and masks are those of [`SampledBatch`][lightning_reasonattn.rollout.sampling.SampledBatch]
    (``ids``, ``attention_mask``, ``response_mask``, ``completion_mask``, ``truncated``).

    Attributes:
        prompts: ``[B]`` the prompt of every completion (each prompt repeated ``G`` times).
        columns: the dataset columns, one value per completion.
        texts: the decoded completions.
        seconds: how long the rollout took.
        stream_step: the prompt stream's batch, which keys the random draws (``None``: the process RNG).
        prompt_index: ``[B]`` global index of each row's prompt in the step's batch.
        sample_index: ``[B]`` index of each row in its group (``0 .. G - 1``).
    """

    prompts: list
    columns: dict
    texts: list[str]
    seconds: float
    stream_step: int | None = None
    prompt_index: torch.Tensor | None = None
    sample_index: torch.Tensor | None = None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Credit:
    """What the measuring forward of some rollouts gives per completion token (no grad).

    Attributes:
        gamma: ``[B, T]`` the credit's advantage multipliers.
        entropy: ``[B, T]`` the entropy of the distribution each token was drawn from.
        traces: the [`RhythmTrace`][lightning_reasonattn.RhythmTrace] (or ``None``: a strategy that reads no
            attention) of each block of rows measured together, in row order.
    """

    gamma: torch.Tensor
    entropy: torch.Tensor
    traces: tuple[RhythmTrace | None, ...]

    @staticmethod
    def join(parts: list[Credit]) -> Credit:
        """The credit of consecutive blocks of rows, as one."""
        return Credit(
            gamma=torch.cat([p.gamma for p in parts]),
            entropy=torch.cat([p.entropy for p in parts]),
            traces=tuple(t for p in parts for t in p.traces),
        )


@dataclass(frozen=True)
class Scored:
    """What ``score`` found for this rank's rollouts.

    Attributes:
        rewards: ``[B]`` this rank's weighted rewards (NaN where no reward function applies).
        per_function: ``{function name: [B]}`` unweighted rewards (NaN where the function returned ``None``).
        advantages: ``[B]`` group-normalised advantages.
        all_ranks: the per-completion values over all ranks (for the logs and ``scale_rewards: batch``).
        log: what this rank's reward functions logged.
        old_logp: ``[B, T]`` log-probabilities before the update, from a no-grad scoring pass (``num_iterations >
            1``); ``None`` with one iteration: the update's first forward is the measurement.
        credit: the credit measured in that scoring pass (``None`` with one iteration).
    """

    rewards: torch.Tensor
    per_function: dict[str, torch.Tensor]
    advantages: torch.Tensor
    all_ranks: Completed
    log: RewardLog
    old_logp: torch.Tensor | None = None
    credit: Credit | None = None


@dataclass(frozen=True)
class Updated:
    """What ``update`` did.

    Attributes:
        loss: this rank's share of the step's loss (times the world size, as weighted; detached).
        sums: this rank's sums for the logs: ``loss``, ``loss_tokens``, the token sums of ``kl`` and the clip
            ratios, ``tokens_per_sec/update``.
        credit: the credit the update applied (measured in its own first forward, or the scoring pass's).
    """

    loss: torch.Tensor
    sums: dict[str, torch.Tensor]
    credit: Credit
