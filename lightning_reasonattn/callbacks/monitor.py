"""AttentionRhythmMonitor: WAAD, FAI and their coupling, logged as torchmetrics from any existing Trainer."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..capture import capture_rhythm, measuring
from ..capture.modules import logits_of
from ..compat import logging_step
from ..functional._checks import check_positive_int
from ..functional.coupling import token_entropy
from ..functional.trace import RhythmTrace
from ..metrics import FutureAttentionInfluence, RhythmCoupling, WindowedAverageAttentionDistance
from ..settings import RhythmSettings
from .base import RhythmCallback
from .inputs import Inputs


class AttentionRhythmMonitor(RhythmCallback):
    r"""Log the WAAD / FAI rhythm of the model being trained, as torchmetrics.

    Every ``every_n_steps`` training steps (after the optimizer step, on that step's batch) and over the validation
    and test batches, it runs [`capture_rhythm`][lightning_reasonattn.capture_rhythm] on the batch in one extra no-grad
    forward pass and logs, under ``{prefix}{train|val|test}/``:

    * ``waad``, ``fai``: means over the response tokens, and with ``num_buckets`` set, ``waad_profile/00``,
      ``fai_profile/00``, ... over that many slices of relative position in the response;
    * ``fai_preceded_rate``, ``fai_preceded_shuffled``, ``fai_preceded_lift`` (the paper's direction: FAI peaks
      with a WAAD peak at or before them), ``waad_followed_rate``, ``waad_followed_shuffled``,
      ``waad_followed_lift`` (WAAD peaks with an FAI peak at or after them), ``entropy_at_peaks``,
      ``entropy_mean``, ``entropy_lift``: the values of
      [`RhythmCoupling`][lightning_reasonattn.metrics.RhythmCoupling], each once.

    It leaves training alone: the forward runs in eval mode without gradients (no dropout draw, so the RNG
    stream is untouched), the training flags are restored, and the model's attention implementation is
    restored on exit; loss and gradients are those of a run without the callback. Its metrics are its own (not
    attached to your module), so several monitors on one module each log their own values.

    Which batches, in any Trainer (see [`RhythmCallback`][lightning_reasonattn.callbacks.base.RhythmCallback]): a
    training step is a batch on which the optimizer stepped, counted as Lightning counts for ``log_every_n_steps``;
    with gradient accumulation the last micro-batch of each step is measured, under manual optimization a batch with
    any number of optimizer steps counts once. The values go to the loggers at Lightning's own step for that batch
    (the row of its ``self.log`` values). Validation and test values pool every batch of the epoch, one value per
    dataloader (suffixed ``/dataloader_idx_0``, ``/dataloader_idx_1``, ... when there are several, as Lightning
    names them). A step or epoch without any response token logs nothing.

    Args:
        every_n_steps: measure on the batch of every ``n``-th training step (steps 1, n + 1, 2n + 1, ...).
        on_validation: also measure every validation batch and log the epoch value.
        on_test: also measure every test batch (``trainer.test``) and log the epoch value.
        model_attr: dotted attribute path of the causal LM in the LightningModule (default: found).
        inputs: how a batch becomes the capture's inputs: the keys of a batch that is a mapping
            ([`BatchKeys`][lightning_reasonattn.callbacks.inputs.BatchKeys], default ``BatchKeys()``: ``input_ids``,
            ``attention_mask``, response tokens where ``labels != -100``), or ``fn(batch) -> {"input_ids",
            "response_mask", "attention_mask"?}`` for any other batch. The keywords ``input_ids_key``,
            ``attention_mask_key``, ``labels_key``, ``response_mask_key`` and ``batch_to_inputs`` used before
            still work, with a ``DeprecationWarning``.
        max_sequences: measure at most this many sequences of a batch (bounds the extra cost).
        num_buckets: profile resolution over relative response position (``None``: no profile).
        prefix: metric name prefix.
        rhythm: the rhythm's settings (default: the spec's, see
            [`RhythmSettings`][lightning_reasonattn.settings.rhythm.RhythmSettings]).
        capture_kwargs: the rhythm's settings as keywords instead (``layers``, ``window``, ``horizon``,
            ``head_fraction``, ``q``, ``look_back``, ``block_size``); others go to
            [`capture_rhythm`][lightning_reasonattn.capture_rhythm].

    Raises:
        MisconfigurationException: ``every_n_steps < 1``, ``inputs`` neither keys nor a function, or (in ``setup``)
            a module with no causal LM.
        KeyError: (at the first measured batch) a batch without the configured keys.

    Example::

        trainer = Trainer(callbacks=[AttentionRhythmMonitor(every_n_steps=50)])
        trainer.fit(my_module, datamodule)   # logs rhythm/train/waad, rhythm/train/fai, ...
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        on_validation: bool = True,
        on_test: bool = True,
        model_attr: str | None = None,
        inputs: Inputs | None = None,
        max_sequences: int | None = None,
        num_buckets: int | None = None,
        prefix: str = "rhythm/",
        rhythm: RhythmSettings | None = None,
        **capture_kwargs,
    ):
        try:
            self.max_sequences = None if max_sequences is None else check_positive_int(max_sequences, "max_sequences")
            if num_buckets is not None:
                check_positive_int(num_buckets, "num_buckets")
        except ValueError as err:
            raise MisconfigurationException(str(err)) from None
        super().__init__(every_n_steps, on_validation, on_test, model_attr, inputs, rhythm, capture_kwargs)
        self.num_buckets = num_buckets
        self.prefix = prefix
        self._metrics: dict[str, list[_SplitMetrics]] = {}  # per split, one per dataloader; the callback's own

    # ------------------------------------------------------------------ work
    def _start(self, trainer, pl_module, split: str, dataloaders: int) -> None:
        # Held by the callback, not the user's module (two monitors on one module keep their own), and placed on
        # the module's device now: every process then syncs states on its device, measured or not.
        self._metrics[split] = [_SplitMetrics(self.num_buckets).to(pl_module.device) for _ in range(dataloaders)]

    def _batch(self, trainer, pl_module, batch, split: str, batch_idx: int, dataloader_idx: int) -> None:
        inputs = self._inputs(batch, self.max_sequences)
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
        metrics = self._metrics.setdefault(split, [])
        while len(metrics) <= dataloader_idx:  # more dataloaders than the trainer announced
            metrics.append(_SplitMetrics(self.num_buckets).to(pl_module.device))
        metrics[dataloader_idx].update(trace, entropy)

    def _end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        named: dict[str, torch.Tensor] = {}
        metrics = self._metrics.get(split, [])
        for index, metric in enumerate(metrics):
            values = metric.compute_and_reset()  # synced across ranks by torchmetrics: the same on every rank
            if values is None:  # no response token on any rank: nothing to say
                continue
            suffix = f"/dataloader_idx_{index}" if len(metrics) > 1 else ""  # as Lightning names them
            named.update({f"{self.prefix}{split}/{name}{suffix}": value for name, value in values.items()})
        if not named:
            return
        # Written to the loggers directly, like LearningRateMonitor, for every split: a train value logged with
        # self.log from on_train_batch_end would stay in Lightning's step results and be written again at every
        # later step; and the values are already reduced over the ranks by torchmetrics' compute(), so there is
        # nothing for Lightning to sync (self.log(..., sync_dist=False) of an epoch value would warn under DDP).
        # The step is Lightning's own for the values of that batch or epoch.
        step = logging_step(trainer)
        for logger in trainer.loggers:
            logger.log_metrics({name: float(value) for name, value in named.items()}, step=step)
        trainer.callback_metrics.update({name: value.detach().cpu() for name, value in named.items()})


class _SplitMetrics(torch.nn.Module):
    """The monitor's metrics of one split and dataloader: WAAD and FAI (with their profiles), the coupling."""

    def __init__(self, num_buckets: int | None):
        super().__init__()
        self.waad = WindowedAverageAttentionDistance(num_buckets)
        self.fai = FutureAttentionInfluence(num_buckets)
        self.coupling = RhythmCoupling()

    def update(self, trace: RhythmTrace, entropy: torch.Tensor | None) -> None:
        self.waad.update_from_trace(trace)
        self.fai.update_from_trace(trace)
        self.coupling.update(trace, entropy)

    def compute_and_reset(self) -> dict[str, torch.Tensor] | None:
        """The values by metric name (``waad``, ``waad_profile/00``, ..., the coupling's), or ``None`` when no
        response token was measured on any rank; then reset for the next batch or epoch."""
        with warnings.catch_warnings():  # an epoch without any response: said by returning None
            warnings.filterwarnings("ignore", r".*was called before the ``update`` method", UserWarning)
            values: dict[str, torch.Tensor] = {}
            for name in ("waad", "fai"):
                result = getattr(self, name).compute()  # {"mean"}, and "profile" with buckets
                values[name] = result["mean"]
                for i, v in enumerate(result.get("profile", ())):
                    values[f"{name}_profile/{i:02d}"] = v
            values.update(self.coupling.compute())
        for metric in (self.waad, self.fai, self.coupling):
            metric.reset()
        return None if torch.isnan(values["waad"]) else values
