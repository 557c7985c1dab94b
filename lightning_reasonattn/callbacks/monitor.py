"""AttentionRhythmMonitor: WAAD, FAI and their coupling, logged as torchmetrics from any existing Trainer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..capture import capture_rhythm, measuring
from ..capture.modules import logits_of
from ..compat import logging_step
from ..functional._checks import check_positive_int
from ..functional.coupling import token_entropy
from ..metrics import FutureAttentionInfluence, RhythmCoupling, WindowedAverageAttentionDistance
from ..settings import RhythmSettings
from .inputs import BatchInputs, due, find_model, split_capture_kwargs


class AttentionRhythmMonitor(Callback):
    r"""Log the WAAD / FAI rhythm of the model being trained, as torchmetrics.

    Every ``every_n_steps`` optimizer steps (after the step, on that step's batch) and over the validation
    batches, it runs [`capture_rhythm`][lightning_reasonattn.capture_rhythm] on the batch in one extra no-grad forward
    pass and logs, under ``{prefix}{train|val}/``:

    * ``waad``, ``fai``: means over the response tokens, and with ``num_buckets`` set, ``waad_profile/00``,
      ``fai_profile/00``, ... over that many slices of relative position in the response;
    * ``fai_preceded_rate``, ``fai_preceded_shuffled``, ``fai_preceded_lift`` (the paper's direction: FAI peaks
      with a WAAD peak at or before them), ``waad_followed_rate``, ``waad_followed_shuffled``,
      ``waad_followed_lift`` (WAAD peaks with an FAI peak at or after them), ``entropy_at_peaks``,
      ``entropy_mean``, ``entropy_lift``: the values of
      [`RhythmCoupling`][lightning_reasonattn.metrics.RhythmCoupling], each once.

    It leaves training alone: the forward runs in eval mode without gradients (no dropout draw, so the RNG
    stream is untouched), the training flags are restored, and the model's attention implementation is
    restored on exit; loss and gradients are those of a run without the callback.

    Args:
        every_n_steps: measure on the batch of every ``n``-th optimizer step (steps 1, n + 1, 2n + 1, ...).
        on_validation: also measure every validation batch and log the epoch value.
        model_attr: dotted attribute path of the causal LM in the LightningModule (default: found).
        input_ids_key: batch key of the token ids.
        attention_mask_key: batch key of the padding mask (optional in the batch).
        labels_key: batch key of labels; response tokens are those with ``labels != -100``.
        response_mask_key: batch key of a bool response mask; used instead of labels when given.
        batch_to_inputs: ``fn(batch) -> {"input_ids", "response_mask", "attention_mask"?}`` for custom
            batches; replaces the keys above.
        max_sequences: measure at most this many sequences of a batch (bounds the extra cost).
        num_buckets: profile resolution over relative response position (``None``: no profile).
        prefix: metric name prefix.
        rhythm: the rhythm's settings (default: the spec's, see
            [`RhythmSettings`][lightning_reasonattn.settings.rhythm.RhythmSettings]).
        capture_kwargs: the rhythm's settings as keywords instead (``layers``, ``window``, ``horizon``,
            ``head_fraction``, ``q``, ``look_back``, ``block_size``); others go to
            [`capture_rhythm`][lightning_reasonattn.capture_rhythm].

    Raises:
        MisconfigurationException: ``every_n_steps < 1``, or (in ``setup``) a module with no causal LM.
        KeyError: (at the first measured batch) a batch without the configured keys.

    Example::

        trainer = Trainer(callbacks=[AttentionRhythmMonitor(every_n_steps=50)])
        trainer.fit(my_module, datamodule)   # logs rhythm/train/waad, rhythm/train/fai, ...
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        on_validation: bool = True,
        model_attr: str | None = None,
        input_ids_key: str = "input_ids",
        attention_mask_key: str = "attention_mask",
        labels_key: str = "labels",
        response_mask_key: str | None = None,
        batch_to_inputs: Callable[[Any], Mapping[str, torch.Tensor]] | None = None,
        max_sequences: int | None = None,
        num_buckets: int | None = None,
        prefix: str = "rhythm/",
        rhythm: RhythmSettings | None = None,
        **capture_kwargs,
    ):
        try:
            self.every_n_steps = check_positive_int(every_n_steps, "every_n_steps")
            self.max_sequences = None if max_sequences is None else check_positive_int(max_sequences, "max_sequences")
            if num_buckets is not None:
                check_positive_int(num_buckets, "num_buckets")
        except ValueError as err:
            raise MisconfigurationException(str(err)) from None
        self.on_validation = on_validation
        self.model_attr = model_attr
        self.inputs = BatchInputs(
            input_ids_key=input_ids_key,
            attention_mask_key=attention_mask_key,
            labels_key=labels_key,
            response_mask_key=response_mask_key,
            batch_to_inputs=batch_to_inputs,
            max_sequences=self.max_sequences,
        )
        self.num_buckets = num_buckets
        self.prefix = prefix
        self.rhythm, self.capture_kwargs = split_capture_kwargs(rhythm, capture_kwargs)
        self._model: torch.nn.Module | None = None
        self._last_step = -1

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._model = find_model(pl_module, self.model_attr, self.capture_kwargs)
        metrics = torch.nn.ModuleDict()
        for split in ("train", "val"):
            metrics[f"{split}_waad"] = WindowedAverageAttentionDistance(self.num_buckets)
            metrics[f"{split}_fai"] = FutureAttentionInfluence(self.num_buckets)
            metrics[f"{split}_coupling"] = RhythmCoupling()
        # Attached to the module so that Lightning moves them to its device; removed in teardown.
        pl_module.add_module("_rhythm_metrics", metrics)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if hasattr(pl_module, "_rhythm_metrics"):
            delattr(pl_module, "_rhythm_metrics")  # nn.Module's __delattr__: out of its submodules
        self._model = None

    # ------------------------------------------------------------------ hooks
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not due(trainer.global_step, self._last_step, self.every_n_steps):
            return
        self._last_step = trainer.global_step
        self._measure(pl_module, batch, "train")
        self._log(trainer, pl_module, "train")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self._measure(pl_module, batch, "val")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self._log(trainer, pl_module, "val")

    # ------------------------------------------------------------------ work
    def _measure(self, pl_module: pl.LightningModule, batch: Any, split: str) -> None:
        inputs = self.inputs(batch)
        keep = inputs["response_mask"].any(-1)  # sequences with a response; others say nothing
        if not keep.any():
            return
        inputs = {key: value[keep] for key, value in inputs.items()}
        with measuring(self._model) as model:
            trace, out = capture_rhythm(
                model,
                inputs["input_ids"],
                inputs.get("attention_mask"),
                inputs["response_mask"],
                return_outputs=True,
                **self.rhythm.capture_kwargs(),
                **self.capture_kwargs,
            )
            logits = logits_of(out)
            # entropy needs a logit row per token; a model that returns the last row only gives no entropy
            full = logits is not None and logits.ndim == 3 and logits.shape[:2] == inputs["input_ids"].shape
            entropy = token_entropy(logits) if full else None
            del out, logits
        metrics = pl_module._rhythm_metrics
        metrics[f"{split}_waad"].update_from_trace(trace)
        metrics[f"{split}_fai"].update_from_trace(trace)
        metrics[f"{split}_coupling"].update(trace, entropy)

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        metrics = pl_module._rhythm_metrics
        values: dict[str, torch.Tensor] = {}
        for name in ("waad", "fai"):
            result = metrics[f"{split}_{name}"].compute()  # synced across ranks by torchmetrics
            if isinstance(result, dict):
                values[name] = result["mean"]
                for i, v in enumerate(result.get("profile", ())):  # metrics return a dict since 0.2
                    values[f"{name}_profile/{i:02d}"] = v
            else:
                values[name] = result
        values.update(metrics[f"{split}_coupling"].compute())
        for metric in (metrics[f"{split}_waad"], metrics[f"{split}_fai"], metrics[f"{split}_coupling"]):
            metric.reset()
        named = {f"{self.prefix}{split}/{name}": value for name, value in values.items()}
        # Written to the loggers directly, like LearningRateMonitor, for both splits: a train value logged with
        # self.log from on_train_batch_end would stay in Lightning's step results and be written again at every
        # later step; and the values are already reduced over the ranks by torchmetrics' compute(), so there is
        # nothing for Lightning to sync (self.log(..., sync_dist=False) of an epoch value would warn under DDP).
        step = logging_step(trainer)
        for logger in trainer.loggers:
            logger.log_metrics({name: float(value) for name, value in named.items()}, step=step)
        trainer.callback_metrics.update({name: value.detach().cpu() for name, value in named.items()})
