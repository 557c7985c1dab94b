"""Prompts and rewards of a GRPO run: task records, a resumable prompt stream, reward functions by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from .. import rewards as rw
from ..rewards import BUILTIN_REWARDS
from ..rewards.references import record_check
from ..tasks import load_prompts
from ..tasks.table import TASKS
from .distributed import shard
from .settings import RewardSettings, TaskSettings


def task_records(
    task: TaskSettings, chat: bool, reward_funcs: Sequence[Callable] = ()
) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` records of a task (a file gives all its records to train and none to test).

    Args:
        task: which task, or which file.
        chat: prompts as chat messages (generated tasks).
        reward_funcs: the run's reward functions: every column one of them requires (see
            [`required_columns`][lightning_reasonattn.rewards.protocol.required_columns]) must be in the records, so
            that a file without its answer column is refused here, when it is read, rather than at the first step.

    Raises:
        ValueError: an unknown task or missing file, records without a column a reward function requires, or a value
            a reward function's check refuses (``reference_columns``, see
            [`record_check`][lightning_reasonattn.rewards.references.record_check]), with the file, line and column.
    """
    if task.name in TASKS:
        train, test = TASKS[task.name].generate_splits(
            task.n_train, task.n_test, task.seed, chat=chat, difficulty=task.difficulty, style=task.style
        )
    elif not Path(task.name).exists():
        names = ", ".join(repr(name) for name in TASKS)
        raise ValueError(
            f"task name={task.name!r} is neither one of {names} nor an existing file or folder: pass one "
            "of those (a JSONL / JSON / parquet file or a dataset folder)."
        )
    else:
        check = record_check(reward_funcs)  # the reward functions' reference columns, checked as the file is read
        train, test = load_prompts(task.name, task.prompt_column, task.answer_column, check=check), []
    check_reward_columns(reward_funcs, train or test, task.name)
    return train, test


def has_held_out_split(task: TaskSettings, stage: str) -> bool:
    """Whether ``task`` holds problems out for validation (a generated task with ``n_test > 0``).

    Raises:
        MisconfigurationException: it has none and ``stage`` is ``"validate"`` (nothing to measure).
    """
    if task.name in TASKS and task.n_test > 0:
        return True
    if stage == "validate":
        raise MisconfigurationException(
            f"task {task.name!r} has no held-out split (a task read from a file trains on all its records; a "
            f"generated one holds out task.n_test={task.n_test} problems): validate needs a generated task "
            f"({', '.join(TASKS)}) with task.n_test > 0."
        )
    return False


def check_reward_columns(funcs: Sequence[Callable], records: Sequence[dict], source: str) -> None:
    """Raise when ``records`` lack a column one of ``funcs`` requires (records share their columns).

    Args:
        funcs: reward functions.
        records: prompt records (their first one is checked: [`load_prompts`][lightning_reasonattn.tasks.load_prompts]
            has made sure every record has the same columns).
        source: the task name or file, for the message.

    Raises:
        ValueError: naming the function, the column, the columns there are, and the fix.
    """
    if not records:
        return
    columns = set(records[0]) - {"prompt"}
    for fn in funcs:
        missing = [c for c in rw.required_columns(fn) if c not in columns]
        if missing:
            hint = " (map the file's answer column with task.answer_column)" if "answer" in missing else ""
            raise ValueError(
                f"reward function {rw.reward_name(fn)!r} needs column {missing[0]!r}, but the records of {source} have"
                f" {sorted(columns) or 'no columns besides prompt'}{hint}: add the column to every record, or"
                " choose a reward function for these columns."
            )


def _import_reward(name: str) -> Callable:
    """The function at ``package.module:function`` or ``package.module.function``."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
    else:
        module_name, _, attr = name.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"reward function {name!r} is not an import path")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise ValueError(f"no module named {err.name!r}") from None
        # the module exists, but something it imports is missing
        raise ImportError(f"reward module {module_name!r} could not be imported: {err}") from err
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"{name!r} is a {type(fn).__name__}, not a function")
    return fn


def reward_functions(settings: RewardSettings, task: TaskSettings) -> tuple[list[Callable], list[float] | None]:
    """Resolve reward names to functions.

    A name is a built-in (``BUILTIN_REWARDS``; these take priority), or an import path in either form,
    ``package.module:function`` or TRL's ``package.module.function``. ``reasonattn fit`` puts the working
    directory on ``sys.path`` first, as ``trl grpo`` does, so ``my_rewards.correct`` finds ``./my_rewards.py``.

    Raises:
        ValueError: no function for the task, or a name that is neither built in nor importable.
    """
    names = settings.functions or list(TASKS[task.name].rewards if task.name in TASKS else ())
    if not names:
        raise ValueError(
            f"no reward function for task {task.name!r}: set rewards.functions, e.g. ['numeric'] or "
            "['my_package.rewards.my_reward']."
        )
    funcs = []
    for name in names:
        if name in BUILTIN_REWARDS:
            funcs.append(BUILTIN_REWARDS[name])
            continue
        try:
            funcs.append(_import_reward(name))
        except ValueError as err:
            raise ValueError(
                f"reward function {name!r} not found ({err}): use one of {sorted(BUILTIN_REWARDS)}, or an import "
                "path 'package.module:function' or 'package.module.function' (a module in the working directory"
                " counts for reasonattn fit)."
            ) from None
    return funcs, settings.weights


class PromptStream:
    """An endless, deterministic stream of prompt batches: batch ``i`` depends only on ``(seed, i)``.

    Each pass over the records follows its own seeded permutation. Iteration starts at ``start()`` (the
    trainer's step when training resumes), so a resumed run sees exactly the prompts it would have seen.
    ``batch_size`` is the global number of prompts per step; process ``rank`` of ``world_size`` iterates over
    its contiguous share of each batch (prompts ``rank * b .. (rank + 1) * b - 1``, ``b = batch_size / W``), so
    the processes together see the batches of one process, whatever their number.
    """

    def __init__(
        self,
        records: list[dict],
        batch_size: int,
        seed: int = 0,
        start: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not records:
            raise ValueError("the task has no prompt records: check the task name, file and columns.")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} does not split over {world_size} processes.")
        self.records = records
        self.batch_size = batch_size
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._orders = {epoch: torch.randperm(len(self.records), generator=gen).tolist()}  # keep one pass
        return self._orders[epoch]

    def batch(self, i: int) -> list[dict]:
        n = len(self.records)
        out = []
        for flat in range(i * self.batch_size, (i + 1) * self.batch_size):
            epoch, pos = divmod(flat, n)
            out.append(self.records[self._order(epoch)[pos]])
        return out

    def share(self, i: int) -> list[dict]:
        """This process's share of batch ``i``."""
        return shard(self.batch(i), self.rank, self.world_size)

    def __iter__(self) -> Iterator[list[dict]]:
        i = self.start()
        while True:
            yield self.share(i)
            i += 1


class HeldOut:
    """The held-out records of process ``rank`` in batches of ``batch_size`` (a batch is a list of records).

    Process ``rank`` of ``world_size`` takes the contiguous share ``records[rank * n // W : (rank + 1) * n // W]``;
    a plain iterable, so Lightning adds no distributed sampler (which would repeat records to even out).
    """

    def __init__(self, records: list[dict], batch_size: int, rank: int = 0, world_size: int = 1):
        mine = shard(records, rank, world_size)
        self.batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[dict]]:
        return iter(self.batches)
