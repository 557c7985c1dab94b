"""RhythmGRPO on 1 and on 2 processes (Lightning's DDP) at the same global batch: steps per second, scaling last.

Usage::

    python benchmarks/bench_ddp.py                       # CPU: gloo, one thread per process (~5 min on 2 cores)
    python benchmarks/bench_ddp.py --accelerator cuda    # one GPU per process (needs 2 GPUs for --devices 2)

Each world size runs in a fresh process tree (Lightning's ``strategy="ddp"`` launches the second rank) with
``OMP_NUM_THREADS=1``, so on CPU a process is one core: 2 processes use 2 cores, the work a single process
does on one. The model is a random Llama (4-bit NF4 + LoRA, rollouts from the dense copy), the same for both
runs, as are the prompts, ``prompts_per_step`` (the global batch, split over the processes), the group size and
the completion length (random weights never sample EOS, so every completion has ``--max-new-tokens`` tokens).
The step time is measured on rank 0 from the start to the end of each training step (the ranks are in lockstep:
each step ends with DDP's gradient all-reduce); the first ``--warmup`` steps are not counted; the table gives
the median, with the median CPU time rank 0 spent in a step (on a busy machine the CPU time shows how the work
divides when the wall time cannot). Target: 2 processes >= 1.7x the steps/s of 1 process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = "result.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="world sizes to run")
    parser.add_argument("--steps", type=int, default=6, help="measured steps per world size")
    parser.add_argument("--warmup", type=int, default=1, help="steps run first and not measured")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step, over all processes")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def worker(args: argparse.Namespace) -> None:
    """One world size (``args.worker`` processes): fit and write rank 0's step times to ``args.out``."""
    import lightning.pytorch as pl
    import torch

    from lightning_reasonattn.grpo import RhythmGRPO
    from lightning_reasonattn.grpo.settings import CreditSettings, RewardSettings, SamplingSettings, TaskSettings
    from lightning_reasonattn.models import LoraSettings

    torch.set_num_threads(1)

    class StepTimer(pl.Callback):
        """Wall time and this process's CPU time of every training step."""

        def __init__(self):
            self.seconds: list[tuple[float, float]] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._start = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            wall, cpu = self._start
            self.seconds.append((time.perf_counter() - wall, time.process_time() - cpu))

    pl.seed_everything(0, verbose=False)
    module = RhythmGRPO(
        model=args.model_dir,
        quantization="nf4",
        lora=LoraSettings(r=16, alpha=32),
        task=TaskSettings(name="arithmetic", n_train=200, n_test=0),
        rewards=RewardSettings(["numeric"]),
        prompts_per_step=args.prompts,
        group_size=args.group,
        sampling=SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=1.0),
        credit=CreditSettings(strategy="coupled", horizon=(4, 16)),
        log_completions_every_n_steps=0,
    )
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=args.worker,
        strategy="ddp" if args.worker > 1 else "auto",
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module)
    if trainer.is_global_zero:
        Path(args.out).write_text(json.dumps(timer.seconds[args.warmup :]))


def build_model(args: argparse.Namespace, folder: Path) -> None:
    from lightning_reasonattn.testing import tiny_checkpoint

    tiny_checkpoint(folder, hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=args.layers,
                    num_attention_heads=8, num_key_value_heads=4)  # fmt: skip


def main(args: argparse.Namespace) -> None:
    here = Path(__file__).resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build_model(args, Path(tmp) / "model")
        for devices in args.devices:
            out = Path(tmp) / f"times-{devices}.json"
            command = [sys.executable, str(here), "--worker", str(devices), "--model-dir", str(Path(tmp) / "model"),
                       "--out", str(out), *sys.argv[1:]]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times = json.loads(out.read_text())
            wall, cpu = [t[0] for t in times], [t[1] for t in times]
            rows.append((devices, statistics.median(wall), min(wall), max(wall), statistics.median(cpu)))
    print(
        f"global batch: {args.prompts} prompts x {args.group} completions x {args.max_new_tokens} new tokens; "
        f"Llama hidden {args.hidden}, {args.layers} layers, NF4 + LoRA r=16; {args.accelerator}, "
        f"{args.steps} steps measured after {args.warmup}"
    )
    head = f"{'processes':>9} | {'step s (median)':>15} | {'min':>6} | {'max':>6} | {'rank-0 CPU s':>12} | "
    print(head + f"{'steps/s':>7} | {'vs 1':>6}")
    print("-" * (len(head) + 17))
    base = next((row for row in rows if row[0] == 1), None)
    for devices, median, low, high, cpu in rows:
        ratio = f"{base[1] / median:5.2f}x" if base else "   -  "
        cells = f"{devices:>9} | {median:>15.3f} | {low:>6.3f} | {high:>6.3f} | {cpu:>12.3f} | "
        print(cells + f"{1 / median:>7.3f} | {ratio:>6}")
    if base and len(rows) > 1:
        devices, median, cpu = rows[-1][0], rows[-1][1], rows[-1][4]
        print(f"\nscaling: {devices} processes = {base[1] / median:.2f}x the steps/s of 1 (target >= 1.7x for 2)")
        print(f"CPU time of a step on rank 0: {cpu / base[4]:.2f} of one process's (ideal 1/{devices})")
        print(f"load average at the end (other work on this machine): {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.worker:  # Lightning re-runs this same command line once per extra rank
        worker(parsed)
    else:
        main(parsed)
