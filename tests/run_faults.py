"""Faults a ``reasonattn fit`` run meets, made to happen at a known moment (named in a test's config).

* ``signal_on_second_call``: a reward function that sends its own process the signal named by the environment
  variable ``FAULT_SIGNAL`` (``SIGTERM``, ``SIGINT``) on its second call, i.e. during step 2.
* ``CtrlCInSecondSave``: the checkpoint IO (``AtomicCheckpointIO``) whose second checkpoint write gets a real SIGINT
  halfway through torch's writer; ``FullDiskInSecondSave``: whose second write fails with ``ENOSPC`` halfway.
* ``SigtermInSetup``: a callback that sends its own process SIGTERM in ``setup``, before the model loads.
"""

from __future__ import annotations

import errno
import os
import signal

import torch
from lightning.pytorch.callbacks import Callback

from lightning_reasonattn.grpo.checkpoint import AtomicCheckpointIO

_CALLS = {"reward": 0}


def signal_on_second_call(prompts, completions, **columns):
    _CALLS["reward"] += 1
    if _CALLS["reward"] == 2:
        os.kill(os.getpid(), getattr(signal, os.environ["FAULT_SIGNAL"]))
    return [float(i % 2 == 0) for i in range(len(completions))]


class _FailingFile:
    """Passes writes to ``fh`` until ``after`` bytes, then ``fault()`` (which raises, or sends a signal)."""

    def __init__(self, fh, fault, after: int = 4096):
        self.fh, self.fault, self.after, self.written = fh, fault, after, 0

    def write(self, data) -> int:
        self.written += len(data)
        if self.written > self.after:
            self.fault()
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


class _FaultInSecondSave(AtomicCheckpointIO):
    def __init__(self):
        super().__init__()
        self.saves = 0

    def fault(self) -> None:
        raise NotImplementedError

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        self.saves += 1
        if self.saves != 2:
            return super().save_checkpoint(checkpoint, path, storage_options)
        real = torch.save
        torch.save = lambda obj, fh, *args, **kwargs: real(obj, _FailingFile(fh, self.fault), *args, **kwargs)
        try:
            return super().save_checkpoint(checkpoint, path, storage_options)
        finally:
            torch.save = real


class CtrlCInSecondSave(_FaultInSecondSave):
    def fault(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt inside this write


class FullDiskInSecondSave(_FaultInSecondSave):
    def fault(self) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class SigtermInSetup(Callback):
    def setup(self, trainer, pl_module, stage):
        os.kill(os.getpid(), signal.SIGTERM)
