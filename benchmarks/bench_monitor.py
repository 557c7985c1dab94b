"""Overhead of AttentionRhythmMonitor on a Lightning fit, side by side with the same fit without it.

Usage::

    python benchmarks/bench_monitor.py                 # 100 steps, every_n_steps=50, 3 repeats
    python benchmarks/bench_monitor.py --steps 50 --repeats 2

A user's supervised fine-tuning LightningModule (random Llama, fp32, CPU) is fit for ``--steps`` steps with
and without ``AttentionRhythmMonitor(every_n_steps=...)``; the runs alternate so that machine noise hits both
alike. Printed: the median fit time of each, and two overhead figures (target: < 3% at every_n_steps=50): the
time spent inside the monitor's hook over the rest of the same fit (robust to a noisy machine), and the ratio
of the median fit times with and without it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, LlamaConfig

from lightning_reasonattn import AttentionRhythmMonitor


class TimedMonitor(AttentionRhythmMonitor):
    """The monitor, plus the wall time spent inside its training hook (the only hook that does work here)."""

    seconds = 0.0

    def on_train_batch_end(self, *args, **kwargs):
        start = time.perf_counter()
        super().on_train_batch_end(*args, **kwargs)
        TimedMonitor.seconds += time.perf_counter() - start


class SFT(pl.LightningModule):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        torch.manual_seed(0)
        self.model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


def data(n: int, length: int, prompt: int, vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (length,), generator=g)
        labels = ids.clone()
        labels[:prompt] = -100
        out.append({"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long), "labels": labels})
    return out


def fit_seconds(config, samples, steps, batch, monitor_every) -> tuple[float, float]:
    """``(fit seconds, seconds inside the monitor)``."""
    TimedMonitor.seconds = 0.0
    callbacks = [TimedMonitor(every_n_steps=monitor_every, on_validation=False)] if monitor_every else []
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    module = SFT(config)
    loader = DataLoader(samples, batch_size=batch, shuffle=False)
    start = time.perf_counter()
    trainer.fit(module, loader)
    return time.perf_counter() - start, TimedMonitor.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=1024,
    )
    samples = data(args.steps * args.batch, args.length, args.length // 4, config.vocab_size)
    fit_seconds(config, samples[: 2 * args.batch], 2, args.batch, args.every)  # warm-up (imports, kernels)
    plain, watched, inside = [], [], []
    for _ in range(args.repeats):
        plain.append(fit_seconds(config, samples, args.steps, args.batch, 0)[0])
        total, hook = fit_seconds(config, samples, args.steps, args.batch, args.every)
        watched.append(total)
        inside.append(hook / (total - hook))
    print(
        f"Llama {args.layers} layers, hidden {args.hidden}, fp32, CPU; batch {args.batch} x {args.length} tokens; "
        f"{args.steps} steps; "
        f"monitor every {args.every} steps; median of {args.repeats} alternating runs"
    )
    print()
    print(f"{'run':<28} | {'fit s (median)':>14} | {'all runs':>30}")
    print("-" * 80)
    for name, times in (("without the monitor", plain), (f"AttentionRhythmMonitor({args.every})", watched)):
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"{name:<28} | {statistics.median(times):>14.2f} | {runs:>30}")
    print()
    ratio = statistics.median(watched) / statistics.median(plain)
    share = statistics.median(inside)
    print("overhead (target < 3% of fit time):")
    print(
        f"  time inside the monitor / rest of the same fit: {100 * share:.2f}% (median; runs: "
        + ", ".join(f"{100 * x:.2f}%" for x in inside)
        + ")"
    )
    print(f"  median fit with / without the monitor:        {100 * (ratio - 1):+.2f}% (ratio {ratio:.4f}; noisier)")


if __name__ == "__main__":
    main()
