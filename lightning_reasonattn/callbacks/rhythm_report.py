"""RhythmReport: the pictures of the attention rhythm of one sequence, logged from any existing Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from ..capture import capture_group_maps, capture_rhythm, measuring
from ..compat import logging_step
from ..functional._checks import check_number
from ..report import default_span, rhythm_markdown, write_report
from ..settings import RhythmSettings
from .base import RhythmCallback
from .inputs import Inputs

MAX_DPI = 600
"""The finest resolution of the pictures (a larger one makes images of hundreds of megapixels)."""


def _png_array(path: Path):
    """``[H, W, 3]`` float array in ``[0, 1]`` of a PNG file (for ``SummaryWriter.add_image``)."""
    from matplotlib.image import imread

    return imread(path)[..., :3]


class RhythmReport(RhythmCallback):
    r"""Log the pictures of the rhythm of one sequence: attention heatmaps, WAAD / FAI curves, a token page.

    Every ``every_n_steps`` training steps (after the optimizer step, on that step's batch; which batches, in any
    Trainer: as for [`AttentionRhythmMonitor`][lightning_reasonattn.AttentionRhythmMonitor]) and on the first batch of
    the first dataloader of every validation and test run, it takes one sequence of the batch, runs
    [`capture_rhythm`][lightning_reasonattn.capture_rhythm] and
    [`capture_group_maps`][lightning_reasonattn.capture_group_maps] on it (two extra no-grad forward passes of that one
    sequence) and renders it with [`lightning_reasonattn.report`][lightning_reasonattn.report]:

    * ``heatmaps``: the local- and global-head mean attention over a window of ``heatmap_size`` positions
      near the start of the response (the maps cost ``heatmap_size ** 2``, never ``N x N``);
    * ``curves``: WAAD and FAI over the response, preplan and anchor tokens marked;
    * ``report.html``: one self-contained page, the response tokens coloured by WAAD or FAI, the numbers on
      hover (see [`rhythm_html`][lightning_reasonattn.report.page.rhythm_html]).

    The files are written under ``{trainer.log_dir}/{dirname}/step_{N}/`` (``val_step_{N}/`` for
    validation, ``test_step_{N}/`` for test, ``N`` = ``trainer.global_step``). A ``TensorBoardLogger``
    also gets the two pictures as images and a Markdown summary as text, under ``{prefix}{train|val|test}/``, at
    Lightning's logging step (that of the monitor's values of the same batch or epoch).
    Loggers that cannot take images (CSVLogger and others) get nothing; when no TensorBoardLogger is attached
    the files are the report, and a warning says so once. Only global rank 0 reports (on its own batch); under
    DDP the other ranks carry on without waiting for it.

    Like [`AttentionRhythmMonitor`][lightning_reasonattn.AttentionRhythmMonitor] it leaves training alone: the
    forwards run in eval mode without gradients (no dropout, so no random number is drawn), the training flags
    are restored, and loss and gradients are those of a run without the callback.

    Args:
        every_n_steps: report on the batch of every ``n``-th training step (steps 1, n + 1, 2n + 1, ...).
        on_validation: also report on the first batch of every validation run (not the sanity check).
        on_test: also report on the first batch of every test run.
        tokenizer: anything with ``decode(list_of_ids) -> str`` (a transformers tokenizer); without it,
            tokens are shown as their ids.
        sequence_index: which sequence of the batch; when it has no response token, the next one that has.
        heatmap_size: the most positions shown in the heatmaps (see
            [`default_span`][lightning_reasonattn.report.sequence.default_span]).
        dpi: resolution of the pictures.
        dirname: folder of the reports inside ``trainer.log_dir``.
        prefix: TensorBoard tag prefix.
        model_attr: how to find the model, exactly as in
            [`AttentionRhythmMonitor`][lightning_reasonattn.AttentionRhythmMonitor]; likewise ``inputs``.
        inputs: how a batch becomes the capture's inputs:
            [`BatchKeys`][lightning_reasonattn.callbacks.inputs.BatchKeys] (default ``BatchKeys()``) or
            ``fn(batch) -> {"input_ids", "response_mask", "attention_mask"?}``; the old keywords
            ``input_ids_key``, ..., ``batch_to_inputs`` still work, with a ``DeprecationWarning``.
        rhythm: the rhythm's settings (default: the spec's, see
            [`RhythmSettings`][lightning_reasonattn.settings.rhythm.RhythmSettings]).
        capture_kwargs: the rhythm's settings as keywords instead (``layers``, ``window``, ``horizon``,
            ``head_fraction``, ``q``, ``look_back``, ``block_size``); others go to
            [`capture_rhythm`][lightning_reasonattn.capture_rhythm].

    Raises:
        MisconfigurationException: ``every_n_steps < 1``, ``sequence_index < 0``, ``heatmap_size < 2``, a
            ``tokenizer`` without ``decode``, ``inputs`` neither keys nor a function, or (in ``setup``) a module
            with no causal LM.
        KeyError: (at the first reported batch) a batch without the configured keys.

    Example::

        from lightning.pytorch.loggers import TensorBoardLogger

        report = RhythmReport(every_n_steps=200, tokenizer=tokenizer)
        trainer = Trainer(callbacks=[AttentionRhythmMonitor(), report], logger=TensorBoardLogger("logs"))
        trainer.fit(my_module, datamodule)  # images + text in TensorBoard, report.html in the log dir
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        on_validation: bool = True,
        on_test: bool = True,
        tokenizer: Any = None,
        sequence_index: int = 0,
        heatmap_size: int = 128,
        dpi: int = 90,
        dirname: str = "rhythm_report",
        prefix: str = "rhythm_report/",
        model_attr: str | None = None,
        inputs: Inputs | None = None,
        rhythm: RhythmSettings | None = None,
        **capture_kwargs,
    ):
        super().__init__(every_n_steps, on_validation, on_test, model_attr, inputs, rhythm, capture_kwargs)
        try:
            self.dpi = check_number("dpi", dpi, low=1, high=MAX_DPI, integer=True, fix=" (default 90)")
        except ValueError as err:
            raise MisconfigurationException(str(err)) from None
        if isinstance(sequence_index, bool) or not isinstance(sequence_index, int) or sequence_index < 0:
            raise MisconfigurationException(
                f"sequence_index={sequence_index!r}: pass the 0-based index of a sequence of the batch, e.g. 0."
            )
        if isinstance(heatmap_size, bool) or not isinstance(heatmap_size, int) or heatmap_size < 2:
            raise MisconfigurationException(
                f"heatmap_size={heatmap_size!r}: pass an int >= 2, the most positions shown in the heatmaps."
            )
        if tokenizer is not None and not callable(getattr(tokenizer, "decode", None)):
            raise MisconfigurationException(
                f"tokenizer={type(tokenizer).__name__} has no decode method: pass a transformers tokenizer "
                "(AutoTokenizer.from_pretrained(...)) or None to show token ids."
            )
        self.tokenizer = tokenizer
        self.sequence_index = sequence_index
        self.heatmap_size = heatmap_size
        self.dirname = dirname
        self.prefix = prefix
        self._root: Path | None = None
        self._warned = False
        self.last_report: dict[str, Path] = {}
        """The files of the latest report (``"html"``, ``"curves"``, ``"heatmaps"``)."""

    # ------------------------------------------------------------------ set-up
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # trainer.log_dir is a broadcast from rank 0: read it here, where every rank is, not in _batch, which
        # only rank 0 passes (the other ranks would never join the broadcast: a hang or a closed connection).
        self._root = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname

    # ------------------------------------------------------------------ work
    def _pick(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(input_ids [1, n], response_mask [1, n])`` of the chosen sequence, padding removed."""
        inputs = self._inputs(batch)
        rows = inputs["response_mask"].any(-1).nonzero().flatten().tolist()
        if not rows:
            return None
        row = next((r for r in rows if r >= self.sequence_index), rows[0])
        ids = inputs["input_ids"][row]
        keep = inputs["attention_mask"][row].bool() if "attention_mask" in inputs else torch.ones_like(ids).bool()
        # The rhythm does not depend on padding, so the unpadded sequence gives the same numbers.
        return ids[keep][None], inputs["response_mask"][row][keep][None]

    def _measure(self, input_ids: torch.Tensor, response_mask: torch.Tensor):
        with measuring(self._model) as model:  # no dropout: the measurement draws no random number
            trace = capture_rhythm(
                model, input_ids, None, response_mask, **self.rhythm.capture_kwargs(), **self.capture_kwargs
            )
            span = default_span(trace, 0, self.heatmap_size)
            shared = ("attention_modules", "forward")  # what the maps take of the capture's other options
            same = {name: self.capture_kwargs[name] for name in shared if name in self.capture_kwargs}
            maps = capture_group_maps(model, input_ids, trace, span=span, block_size=self.rhythm.block_size, **same)
        return trace.to("cpu"), {name: value.cpu() for name, value in maps.items()}, span

    def _decode(self, ids: list[int]) -> list[str]:
        if self.tokenizer is None:  # the ids, each with a space after it so that they read apart on the page
            return [f"{i} " for i in ids]
        return [self.tokenizer.decode([i]) for i in ids]

    def _batch(self, trainer, pl_module, batch: Any, split: str, batch_idx: int, dataloader_idx: int) -> None:
        if split != "train" and (batch_idx, dataloader_idx) != (0, 0):  # an epoch: its first batch
            return
        if not trainer.is_global_zero:
            return
        picked = self._pick(batch)
        if picked is None:  # no sequence of the batch has a response
            return
        input_ids, response_mask = picked
        trace, maps, span = self._measure(input_ids, response_mask)
        tokens = self._decode(input_ids[0].tolist())
        step = trainer.global_step
        name = f"step_{step}" if split == "train" else f"{split}_step_{step}"
        root = self._root
        title = f"Rhythm report, {split} step {step}"
        paths = write_report(root / name, trace, tokens, maps, span, title=title, dpi=self.dpi)
        self.last_report = paths

        boards = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if boards:
            log_step = logging_step(trainer)  # the monitor's and Lightning's step for the same batch or epoch
            images = {picture: _png_array(paths[picture]) for picture in ("heatmaps", "curves") if picture in paths}
            page = (Path(self.dirname) / name / "report.html").as_posix()
            text = rhythm_markdown(trace, tokens, title=title) + f"\n\nThe token-level page: `{page}` in the log dir."
            for logger in boards:
                for picture, image in images.items():
                    logger.experiment.add_image(f"{self.prefix}{split}/{picture}", image, log_step, dataformats="HWC")
                logger.experiment.add_text(f"{self.prefix}{split}/summary", text, log_step)
        if not boards and not self._warned:  # nothing shows the pictures: say once where they are
            blind = [type(logger).__name__ for logger in trainer.loggers]
            self._warned = True
            who = f"the logger(s) {', '.join(blind)} cannot show" if blind else "the trainer has no logger to show"
            rank_zero_warn(
                f"RhythmReport: {who} images or HTML, so the rhythm report is written only as files (PNG pictures "
                f"and report.html) under {root}. Use lightning.pytorch.loggers.TensorBoardLogger to see the "
                "pictures in TensorBoard."
            )
