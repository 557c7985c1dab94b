"""AttentionRhythmMonitor and RhythmReport under Lightning's DDP: ``python tests/ddp_callbacks.py OUT [gpt] DEVICES``.

Lightning's ``strategy="ddp"`` re-runs this script once per extra rank (CPU processes, gloo). It validates a
user's module with the callbacks (two monitors of other settings and a report; 4 validation sequences, one per
batch: 2 per rank), then fits it for one step with validation after it, and rank 0 writes ``OUT/result.json``:
the monitors' validation values, the report folders written, and every warning any step raised. The module
fine-tunes a transformers Llama, or with ``gpt`` a nanoGPT-style model (the SDPA capture route).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from test_callbacks import ValidatedModule, samples
from tiny_gpt import ValidatedGPTModule
from torch.utils.data import DataLoader

from lightning_reasonattn import AttentionRhythmMonitor, RhythmReport


def trainer(out: Path, devices: int, report: bool = True, **kw) -> pl.Trainer:
    # two monitors: each keeps its own metrics, synced over the ranks by its own collectives
    second = AttentionRhythmMonitor(every_n_steps=1, prefix="rhythm_short/", horizon=(4, 24))
    callbacks = [AttentionRhythmMonitor(every_n_steps=1, num_buckets=2), second]
    if report:
        callbacks.append(RhythmReport(every_n_steps=1, heatmap_size=8, dpi=40))
    args = dict(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=CSVLogger(out, name="", version=""),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**args, **kw})


MODULES = {"hf": ValidatedModule, "gpt": ValidatedGPTModule}


def validate(out: Path, devices: int, report: bool = True, kind: str = "hf") -> dict[str, float]:
    """The monitor's values over 4 validation sequences (on ``devices`` processes, 2 each with 2)."""
    t = trainer(out, devices, report)
    t.validate(MODULES[kind](), DataLoader(samples(4, seed=5), batch_size=1), verbose=False)
    return {k: v.item() for k, v in t.callback_metrics.items() if k.startswith(("rhythm/", "rhythm_short/"))}


def main(out: Path, devices: int, kind: str = "hf") -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = validate(out / "validate", devices, kind=kind)
        fit = trainer(out / "fit", devices, max_steps=1, val_check_interval=1)
        train, val = DataLoader(samples(8), batch_size=2), DataLoader(samples(4, seed=5), batch_size=1)
        fit.fit(MODULES[kind](), train, val)
    if fit.is_global_zero:
        reports = sorted(p.parent.name for p in (out / "fit").rglob("report.html"))
        result = {"val": values, "reports": reports, "warnings": [str(w.message) for w in caught]}
        (out / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), int(sys.argv[-1]), *sys.argv[2:-1])
