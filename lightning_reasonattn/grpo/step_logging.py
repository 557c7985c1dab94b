"""What RhythmGRPO logs after a step: the step's values over all ranks, and sample completions.

Functions of what they read (no module state): the numbers come from the pure functions of ``grpo.step_metrics``;
the gathers are [`Processes`][lightning_reasonattn.grpo.distributed.Processes]' (every rank must call them, in the
same order).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..rewards.protocol import RewardLog
from .distributed import Processes
from .step_data import Rollouts, Scored, Updated
from .step_metrics import completion_metrics, token_means, token_sums, update_means


def step_values(
    rollouts: Rollouts, scored: Scored, updated: Updated, *, group_size: int, processes: Processes
) -> dict[str, torch.Tensor]:
    """The step's logged values over all ranks' completions (every rank gets the same numbers).

    Args:
        rollouts: this rank's rollouts.
        scored: their rewards and advantages (``scored.all_ranks``: every rank's per-completion values).
        updated: what the update did: its sums (loss, clip and KL token sums, throughput) and the credit it applied.
        group_size: ``G``.
        processes: the gathers over the ranks (every rank must call this, in the same order).
    """
    done = scored.all_ranks
    logged = RewardLog()  # log_metric values of every rank
    for metrics in processes.gather_objects(scored.log.metrics):
        for name, seen in metrics.items():
            logged.metrics.setdefault(name, []).extend(seen)
    values = completion_metrics(
        done.rewards,
        done.per_function,
        lengths=done.lengths,
        truncated=done.truncated,
        group_size=group_size,
        log=logged,
    )
    mask = rollouts.completion_mask
    credit = updated.credit
    preplan = anchor = None
    if credit.traces and credit.traces[0] is not None:
        width = rollouts.width
        preplan = torch.cat([t.preplan[:, -width:] for t in credit.traces])
        anchor = torch.cat([t.anchor[:, -width:] for t in credit.traces])
    local = token_sums(mask, credit.entropy, credit.gamma, preplan, anchor) | updated.sums
    local["tokens_per_sec/rollout"] = mask.sum() / max(rollouts.seconds, 1e-9)
    device = processes.device
    if device.type == "cuda":  # the step's own high-water mark, the largest over the ranks
        local["memory/peak_gib"] = torch.tensor(torch.cuda.max_memory_allocated(device) / 2**30)
    total, largest = processes.sum_and_max(local)
    return values | token_means(total) | update_means(total, largest, processes.world_size)


def completion_rows(rollouts: Rollouts, scored: Scored, *, step: int, group_size: int) -> list[dict[str, Any]]:
    """The first completion of every prompt of this rank's rollouts, as ``completions.jsonl`` rows."""
    n = len(rollouts.texts)
    extra = {k: v for k, v in scored.log.extra.items() if len(v) == n}  # log_extra columns, one value each
    rows = []
    for i in range(0, n, group_size):
        reward = float(scored.rewards[i])
        row = {
            "step": step,
            "prompt": rollouts.prompts[i],
            "completion": rollouts.texts[i],
            "reward": None if math.isnan(reward) else reward,  # null: no reward function applied
        }
        rows.append(row | {k: v[i] for k, v in extra.items()})
    return rows


def append_completions(log_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to ``log_dir/completions.jsonl`` (one JSON object a line)."""
    path = Path(log_dir) / "completions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")  # log_extra values may be any type


def held_out_values(
    rollouts: Rollouts, rewards: torch.Tensor, per_function: dict[str, torch.Tensor], log: RewardLog
) -> dict[str, torch.Tensor]:
    """A validation batch's values, one per completion: ``val/reward``, ``val/completions/mean_length``,
    ``val/rewards/<function>/mean`` and what the reward functions logged. NaN where no reward function applies: a
    NaN-ignoring mean leaves those out."""
    values = {"val/reward": rewards, "val/completions/mean_length": rollouts.completion_mask.sum(-1)}
    values |= {f"val/rewards/{name}/mean": r for name, r in per_function.items()}
    return values | {f"val/{name}": torch.tensor(v) for name, v in log.metrics.items()}
