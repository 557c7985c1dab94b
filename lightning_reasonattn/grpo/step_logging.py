"""What RhythmGRPO logs after a step: the step's metrics over all ranks, and sample completions.

A mixin of [`RhythmGRPO`][lightning_reasonattn.RhythmGRPO] (it reads the module's ``group_size``,
``log_completions_every_n_steps``, ``_strategy`` and ``_world_size``); the numbers come from the pure
functions of ``grpo.step_metrics``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..compat import attached_trainer
from ..rewards.protocol import RewardLog
from .distributed import gather_objects, sum_and_max_over_ranks
from .step_data import Rollouts, Scored
from .step_metrics import completion_metrics, token_means, token_sums, update_means


class StepLogging:
    """``_log_step`` and ``_write_completions`` of a LightningModule that trains with GRPO steps."""

    def _log_step(self, rollouts: Rollouts, scored: Scored, update_sums: dict[str, torch.Tensor]) -> None:
        """Log the step's values over all ranks' completions (each rank logs the same numbers)."""
        done = scored.step
        logged = RewardLog()  # log_metric values of every rank
        for metrics in gather_objects(scored.log.metrics, self._world_size):
            for name, seen in metrics.items():
                logged.metrics.setdefault(name, []).extend(seen)
        values = completion_metrics(
            done.rewards, done.per_function, done.lengths, done.truncated, self.group_size, logged
        )
        m = rollouts.completion_mask
        preplan = anchor = None
        if scored.traces and scored.traces[0] is not None:
            width = rollouts.width
            preplan = torch.cat([t.preplan[:, -width:] for t in scored.traces])
            anchor = torch.cat([t.anchor[:, -width:] for t in scored.traces])
        local = token_sums(m, scored.entropy, scored.gamma, preplan, anchor) | update_sums
        local["tokens_per_sec/rollout"] = m.sum() / max(rollouts.seconds, 1e-9)
        if self.device.type == "cuda":  # the step's own high-water mark, the largest over the ranks
            local["memory/peak_gib"] = torch.tensor(torch.cuda.max_memory_allocated(self.device) / 2**30)
        total, largest = sum_and_max_over_ranks(self._strategy, local, self.device)
        values |= token_means(total) | update_means(total, largest, self._world_size)
        batch = rollouts.ids.shape[0]
        for name, value in values.items():  # equal on every rank: nothing left for Lightning to reduce
            bar = name in ("reward", "tokens_per_sec/rollout")
            self.log(name, value.float().cpu(), prog_bar=bar, on_step=True, on_epoch=False, batch_size=batch)
        every = self.log_completions_every_n_steps
        if every and self.global_step % every == 0:
            self._write_completions(rollouts, scored)

    def _write_completions(self, rollouts: Rollouts, scored: Scored) -> None:
        """Append the first completion of every prompt of the step (all ranks') to ``completions.jsonl``."""
        log_dir = self.trainer.log_dir if attached_trainer(self) is not None else None  # a broadcast: all ranks read it
        n = len(rollouts.texts)
        extra = {k: v for k, v in scored.log.extra.items() if len(v) == n}  # log_extra columns, one value each
        rows = []
        for i in range(0, n, self.group_size):  # the first completion of every prompt
            reward = float(scored.rewards[i])
            rows.append({"step": self.global_step, "prompt": rollouts.prompts[i], "completion": rollouts.texts[i],
                         "reward": None if math.isnan(reward) else reward,  # null: no reward function applied
                         **{k: v[i] for k, v in extra.items()}})  # fmt: skip
        every_rank = gather_objects(rows, self._world_size)
        if not log_dir or self.global_rank != 0:
            return
        path = Path(log_dir) / "completions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            for row in (row for part in every_rank for row in part):
                fh.write(json.dumps(row, default=str) + "\n")  # log_extra values may be any type
