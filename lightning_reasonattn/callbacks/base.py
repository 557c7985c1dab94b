"""What the two callbacks share: the model they measure, how a batch becomes the capture's inputs, and which
batches they see, in whatever way the Trainer steps."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..compat import logging_step
from ..functional._checks import check_positive_int
from ..settings import RhythmSettings
from .inputs import Inputs, find_model, inputs_argument, read_inputs, split_capture_kwargs

SPLITS = {"val": "validation", "test": "test"}
"""The evaluation splits, by the name in the callbacks' metric names and folders."""


class RhythmCallback(Callback):
    """The base of [`AttentionRhythmMonitor`][lightning_reasonattn.AttentionRhythmMonitor] and
    [`RhythmReport`][lightning_reasonattn.RhythmReport]: one path from every Trainer hook to three methods.

    * ``_start(trainer, pl_module, split, dataloaders)``: a training run, or an evaluation epoch, begins;
    * ``_batch(trainer, pl_module, batch, split, batch_idx, dataloader_idx)``: a batch to measure;
    * ``_end(trainer, pl_module, split)``: after each training batch measured, and at the end of an evaluation epoch.

    ``split`` is ``"train"``, ``"val"`` or ``"test"``. Which batches are seen:

    * **training**: a batch on which the optimizer stepped (``trainer.global_step`` moved during it, so not a
      micro-batch that only accumulated gradients), the first such batch at or past each multiple of
      ``every_n_steps`` of Lightning's logging step. That step counts the batches that stepped, once per batch
      whatever the number of optimizers, as ``log_every_n_steps`` does; with one optimizer step per batch the
      measured steps are 1, n + 1, 2n + 1, ... The count is the Trainer's, so a resumed run measures the steps the
      uninterrupted run would, and a callback reused in another Trainer starts afresh.
    * **validation** (``on_validation``) and **test** (``on_test``): every batch of every dataloader, not the sanity
      check. Prediction is not measured.
    """

    def __init__(
        self,
        every_n_steps: int,
        on_validation: bool,
        on_test: bool,
        model_attr: str | None,
        inputs: Inputs | None,
        rhythm: RhythmSettings | None,
        capture_kwargs: dict[str, Any],
    ):
        try:
            self.every_n_steps = check_positive_int(every_n_steps, "every_n_steps")
        except ValueError as err:
            raise MisconfigurationException(str(err)) from None
        self.on_validation = on_validation
        self.on_test = on_test
        self.model_attr = model_attr
        self.inputs = inputs_argument(inputs, capture_kwargs, type(self).__name__)
        self.rhythm, self.capture_kwargs = split_capture_kwargs(rhythm, capture_kwargs)
        self._model: torch.nn.Module | None = None
        self._next_step: int | None = None  # the logging step at or past which a stepped batch is measured next
        self._steps_before: int | None = None  # trainer.global_step when the current training batch began

    # ------------------------------------------------------------------ for the subclasses
    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str, dataloaders: int) -> None:
        """A training run (``dataloaders = 1``) or an evaluation epoch over ``dataloaders`` dataloaders begins."""

    def _batch(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        split: str,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        raise NotImplementedError

    def _end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        """After a measured training batch, or at the end of an evaluation epoch."""

    def _inputs(self, batch: Any, max_sequences: int | None = None) -> dict[str, torch.Tensor]:
        """The capture's inputs of ``batch``: see ``read_inputs``."""
        return read_inputs(self.inputs, batch, max_sequences)

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._model = find_model(pl_module, self.model_attr, self.capture_kwargs)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._model = None

    # ------------------------------------------------------------------ training
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._next_step = None  # set at the first batch: a resumed run's step is restored only then
        self._start(trainer, pl_module, "train", 1)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._steps_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stepped = self._steps_before is not None and trainer.global_step != self._steps_before
        self._steps_before = None
        step, n = logging_step(trainer), self.every_n_steps  # step: those taken before this batch, its logged row
        if self._next_step is None:  # the first batch of this fit; a resumed run goes on with the multiples of n
            self._next_step = -(-step // n) * n
        if not stepped or step < self._next_step:
            return
        self._next_step = (step // n + 1) * n
        self._batch(trainer, pl_module, batch, "train", batch_idx, 0)
        self._end(trainer, pl_module, "train")

    # ------------------------------------------------------------------ validation and test
    def _evaluates(self, trainer: pl.Trainer, split: str) -> bool:
        wanted = self.on_validation if split == "val" else self.on_test
        return wanted and not trainer.sanity_checking

    def _epoch_start(self, trainer, pl_module, split: str) -> None:
        if self._evaluates(trainer, split):
            batches = trainer.num_val_batches if split == "val" else trainer.num_test_batches
            self._start(trainer, pl_module, split, max(1, len(batches)))

    def _batch_end(self, trainer, pl_module, batch, split: str, batch_idx: int, dataloader_idx: int) -> None:
        if self._evaluates(trainer, split):
            self._batch(trainer, pl_module, batch, split, batch_idx, dataloader_idx)

    def _epoch_end(self, trainer, pl_module, split: str) -> None:
        if self._evaluates(trainer, split):
            self._end(trainer, pl_module, split)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start(trainer, pl_module, "val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end(trainer, pl_module, batch, "val", batch_idx, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start(trainer, pl_module, "test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end(trainer, pl_module, batch, "test", batch_idx, dataloader_idx)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, pl_module, "test")
