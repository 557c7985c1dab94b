"""What RhythmGRPO needs from Lightning's strategy to train on several processes: checks, gathers and the seed.

Lightning launches the processes and wraps the module in ``DistributedDataParallel``; nothing here starts a
process or opens a connection. Each rank takes a contiguous, whole-group share of every step's prompts, so
group advantages need no communication; what is communicated is one gather of the per-completion values per
step (rewards, lengths...: the metrics and ``scale_rewards: batch``), one gather of the token statistics for
the logs, and DDP's own gradient all-reduce.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

SUPPORTED = "a single device or Lightning's DDP (strategy 'ddp', 'ddp_spawn', 'ddp_fork', 'ddp_notebook')"


def check_strategy(strategy: Any) -> None:
    """Refuse strategies RhythmGRPO does not support (FSDP, DeepSpeed, XLA, model parallel...).

    Raises:
        MisconfigurationException: naming the strategy and the supported ones.
    """
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy, XLAStrategy

    if isinstance(strategy, SingleDeviceStrategy):
        return
    if isinstance(strategy, DDPStrategy) and not isinstance(strategy, (DeepSpeedStrategy, XLAStrategy)):
        return
    raise MisconfigurationException(
        f"trainer.strategy={type(strategy).__name__}: RhythmGRPO trains on {SUPPORTED}. Its base model is frozen "
        "and 4-bit, so sharding it (FSDP, DeepSpeed) would save little; use --trainer.strategy ddp."
    )


def check_split(prompts_per_step: int, world_size: int) -> None:
    """Refuse a step that cannot be split into equal whole-group shares over ``world_size`` processes.

    Raises:
        MisconfigurationException: ``prompts_per_step`` not a multiple of ``world_size``.
    """
    if prompts_per_step % world_size:
        lower = prompts_per_step - prompts_per_step % world_size
        higher = lower + world_size
        e_g = f"{lower} or {higher}" if lower else f"{higher}"
        raise MisconfigurationException(
            f"prompts_per_step={prompts_per_step} cannot be split evenly over {world_size} processes (devices x "
            f"nodes): each process takes whole groups of the step's prompts. Set model.prompts_per_step to a "
            f"multiple of {world_size} (e.g. {e_g}), or change trainer.devices / trainer.num_nodes."
        )


def check_max_steps(max_steps: int | None) -> None:
    """Refuse a run without ``trainer.max_steps``: the prompt stream never ends an epoch.

    Raises:
        MisconfigurationException: ``max_steps`` is ``None`` or negative (Lightning's -1, "no limit").
    """
    if max_steps is None or max_steps < 0:
        raise MisconfigurationException(
            f"trainer.max_steps={max_steps}: the prompt stream never ends an epoch, so set trainer.max_steps "
            "(e.g. --trainer.max_steps 100)."
        )


def check_held_out(count: int, world_size: int) -> None:
    """Refuse a held-out split too small to give every process at least one problem.

    Raises:
        MisconfigurationException: ``0 < count < world_size``.
    """
    if 0 < count < world_size:
        raise MisconfigurationException(
            f"the task has {count} held-out problem(s) for {world_size} processes: validation gives each process a "
            f"share. Set model.task.n_test >= {world_size} (or 0 for no validation)."
        )


def shard(items: list, rank: int, world_size: int) -> list:
    """The contiguous share of ``items`` of process ``rank``: ``items[rank * n // W : (rank + 1) * n // W]``."""
    n = len(items)
    return items[rank * n // world_size : (rank + 1) * n // world_size]


def gather_rows(strategy: Any, tensor: torch.Tensor) -> torch.Tensor:
    """``[W * B, ...]``: every rank's ``[B, ...]`` tensor, in rank order (``tensor`` itself on one process).

    Every rank must call it with the same shape (each rank holds the same number of completions).
    """
    if strategy is None or getattr(strategy, "world_size", 1) == 1:
        return tensor
    return strategy.all_gather(tensor).flatten(0, 1)


def gather_columns(strategy: Any, columns: list[torch.Tensor], device: torch.device | str) -> torch.Tensor:
    """``[K, N]``: ``K`` per-completion columns (``[B]`` each, any dtype) of every rank, in float64 (exact for
    counts and float32 values), in one gather."""
    local = torch.stack([c.to(device, torch.float64) for c in columns], 1)  # [B, K]
    return gather_rows(strategy, local).T


def sum_and_max_over_ranks(
    strategy: Any, values: dict[str, torch.Tensor | float], device: torch.device | str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(sum over ranks, max over ranks)`` of each scalar of ``values`` (float64), in one gather."""
    names = list(values)
    stacked = torch.stack([torch.as_tensor(values[k], device=device).double() for k in names])
    table = gather_rows(strategy, stacked[None])  # [W, K]
    return dict(zip(names, table.sum(0), strict=True)), dict(zip(names, table.max(0).values, strict=True))


def gather_objects(obj: Any, world_size: int) -> list:
    """``[obj of rank 0, obj of rank 1, ...]``: picklable objects of every rank (a list of one on one process)."""
    if world_size == 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return [obj]
    out: list = [None] * world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def run_seed(strategy: Any) -> int:
    """The run's seed: ``seed_everything``'s (``PL_GLOBAL_SEED``), else a random one drawn on rank 0 and shared."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None:
        return int(seed)
    drawn = random.SystemRandom().randrange(2**31)
    return int(strategy.broadcast(drawn)) if strategy is not None else drawn


def rng_states() -> dict:
    """This process's RNG states (torch, CUDA, Python), for a checkpoint."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
    }


def set_rng_states(state: dict) -> None:
    """Restore [`rng_states`][rng_states]."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])


def frozen_names(module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s frozen parameters and buffers: DDP leaves them alone (no broadcast, no reducer).

    Every rank loads the same base weights, so there is nothing to synchronise; the 4-bit weights would
    otherwise be broadcast at start-up and the buffers before every forward.
    """
    frozen = [name for name, p in module.named_parameters() if not p.requires_grad]
    return frozen + [name for name, _ in module.named_buffers()]


@dataclass(frozen=True)
class Processes:
    """The processes of a run as a GRPO step sees them: this one's rank, their number, and the gathers.

    Every rank must call each gather, in the same order. Outside a trainer (``strategy=None``) there is one process
    and the gathers return this process's values.

    Attributes:
        strategy: Lightning's strategy, or ``None``.
        device: where values are gathered (this rank's device).
    """

    strategy: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def world_size(self) -> int:
        return getattr(self.strategy, "world_size", 1) if self.strategy is not None else 1

    @property
    def rank(self) -> int:
        return getattr(self.strategy, "global_rank", 0) if self.strategy is not None else 0

    def gather_columns(self, columns: list[torch.Tensor]) -> torch.Tensor:
        """See [`gather_columns`][lightning_reasonattn.grpo.distributed.gather_columns]."""
        return gather_columns(self.strategy, columns, self.device)

    def sum_and_max(self, values: dict[str, torch.Tensor | float]) -> tuple[dict, dict]:
        """See [`sum_and_max_over_ranks`][lightning_reasonattn.grpo.distributed.sum_and_max_over_ranks]."""
        return sum_and_max_over_ranks(self.strategy, values, self.device)

    def gather_objects(self, obj: Any) -> list:
        """See [`gather_objects`][lightning_reasonattn.grpo.distributed.gather_objects]."""
        return gather_objects(obj, self.world_size)
