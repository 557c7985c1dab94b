"""How ``reasonattn fit``, ``validate`` and ``export`` end early: a signal, a failed write, a lost process.

Each ends with one line on stderr that says what stopped, what is kept and how to go on, and an exit status a
scheduler reads (``128 + signum`` after a signal, as shells report it; 2 for an error), never a traceback:

* **SIGTERM** (``kill``, a scheduler's time limit or preemption): Lightning's handler lets the step in progress
  finish, then stops the loop (its ``SIGTERMException``, which exited with status 0); the status is 143. On SLURM with
  ``auto_requeue``, Lightning's own handling (SIGUSR1: save ``hpc_ckpt_*.ckpt``, requeue) is unchanged.
* **SIGINT** (Ctrl-C): the step in progress is abandoned (Lightning's ``exit(1)``); the status is 130. A Ctrl-C
  inside a checkpoint write leaves the previous checkpoint whole (the write goes to a temporary file).
* **A failed write** (a full disk, a folder made read-only) of a checkpoint or an export: one line naming the file
  and the cause ([`OutputError`][lightning_reasonattn.outputs.OutputError]), status 2; the checkpoints written before
  it are whole.
* **A lost process** of a run on several processes or nodes (one died, or its node did): the others stop at their
  next collective with torch's error, or after ``timeout`` (the DDP strategy's, 30 minutes by default); one line,
  status 2.

[`RunRecord`][RunRecord] is the callback that notes when the run started and what ended it; the
[`AtomicCheckpointIO`][lightning_reasonattn.grpo.checkpoint.AtomicCheckpointIO] plugin knows the last checkpoint
written whole.
"""

from __future__ import annotations

import re
import shlex

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..interrupts import Terminated, signal_name

LOST_PROCESS = ("connection closed by peer", "connection reset by peer", "broken pipe", "timed out", "timeout")
"""Fragments of gloo's errors (lower case) when another process of the run is gone or does not answer."""


class RunRecord(Callback):
    """Notes the moment the first batch is about to run (errors after it are the run's, not the setup's), the
    exception that ended the run, the step reached, whether this is global rank 0, and the checkpoint IO (whose
    ``last_saved`` names the last checkpoint written whole)."""

    def __init__(self):
        self.started = False
        self.running = False  # the loop runs: Lightning's SIGTERM handler stops it after the step in progress
        self.exception: BaseException | None = None
        self.step = 0
        self.rank_zero = True
        self.checkpoint_io = None

    def _start(self, trainer, *args) -> None:
        self.started = self.running = True
        self.checkpoint_io = trainer.strategy.checkpoint_io

    on_sanity_check_start = on_train_start = on_validation_start = _start

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.running = False
        self.exception = exception
        self.step = trainer.global_step
        self.rank_zero = trainer.is_global_zero
        self.checkpoint_io = trainer.strategy.checkpoint_io

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self.running = False


def stop_signal(err: BaseException, record: RunRecord) -> BaseException | None:
    """The signal behind ``err`` (``KeyboardInterrupt``, [`Terminated`][lightning_reasonattn.interrupts.Terminated]
    or Lightning's ``SIGTERMException``), including the ``SystemExit(1)`` Lightning raises after a Ctrl-C; else
    ``None``."""
    if isinstance(err, (KeyboardInterrupt, Terminated, SIGTERMException)):
        return err
    if isinstance(err, SystemExit) and isinstance(record.exception, KeyboardInterrupt):
        return record.exception
    return None


def is_lost_process(err: BaseException) -> bool:
    """Whether ``err`` is torch.distributed's report of another process that died or stopped answering."""
    from torch.distributed import DistBackendError, DistStoreError

    text = str(err).lower()  # (a DistNetworkError, such as a port in use, is no lost process: not here)
    return isinstance(err, (DistBackendError, DistStoreError)) or (
        isinstance(err, RuntimeError) and "gloo" in text and any(fragment in text for fragment in LOST_PROCESS)
    )


def stopped_line(command: str, sig: BaseException, record: RunRecord, argv: list[str]) -> str:
    """The one line that says which signal stopped ``command``, what is kept and how to go on."""
    name = signal_name(sig)
    if command == "export":
        return f"interrupted by {name}: the adapter folder is as it was (an export is written whole or not at all)."
    if command == "validate":
        return f"interrupted by {name}: validation did not finish (validate writes no file)."
    if not record.started:
        return f"interrupted by {name} before the first step: no step ran and no checkpoint was written."
    where = f"stopped by {name} after step {record.step}"
    saved = getattr(record.checkpoint_io, "last_saved", None)
    if saved is None:
        return f"{where}: this run wrote no checkpoint (a ModelCheckpoint callback writes them), so nothing is kept."
    path, step = saved
    again = [arg for i, arg in enumerate(argv) if arg != "--ckpt_path" and (i == 0 or argv[i - 1] != "--ckpt_path")]
    again = [arg for arg in again if not arg.startswith("--ckpt_path=")]
    resume = shlex.join(["reasonattn", command, *again, "--ckpt_path", path])
    return (
        f"{where}: the checkpoints written are whole, the last {path!r} (step {step}); resume with (steps after "
        f"{step} run again): {resume}"
    )


def lost_process_line(err: BaseException, record: RunRecord) -> str:
    """The one line for a run whose other process (or node) died or stopped answering."""
    saved = getattr(record.checkpoint_io, "last_saved", None)
    kept = f"the last checkpoint is {saved[0]!r} (step {saved[1]})" if saved else "no checkpoint was written"
    first = re.sub(r"^\[[^\]]*\]\s*", "", " ".join(str(err).split()))[:160]  # without gloo's "[file.cc:553]"
    when = f"stopped answering after step {record.step}" if record.started else "did not join, or stopped answering,"
    return (
        f"another process of this run {when} ({first}): a process or node died or never started, or the network "
        f"between them failed; {kept}. Start every process again (with --ckpt_path to resume)."
    )
