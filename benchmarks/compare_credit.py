"""Credit strategies side by side: the same config trained with each strategy and several seeds.

Usage::

    python benchmarks/compare_credit.py                                   # CPU example, uniform vs coupled, 3 seeds
    python benchmarks/compare_credit.py --config examples/grpo_countdown_qwen3_4b.yaml \\
        --strategies uniform random entropy coupled --seeds 0 1 2 --steps 200   # a GPU

Every (strategy, seed) is one ``reasonattn fit`` run in a fresh process, with ``seed_everything`` set to the
seed (sampling, the prompt order and the adapter's initialisation all follow it) and validation every
``--val-every`` steps. The table shows, per strategy, the mean and standard deviation over seeds of the
held-out greedy reward (``val/reward``) after the first and the last validation and of the training reward
over the last 10 steps; the differences against ``uniform`` (plain GRPO) come last. With few seeds and a
small held-out set, read a difference against the spread, not alone.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "examples" / "grpo_cpu_smollm2.yaml"))
    parser.add_argument("--strategies", nargs="+", default=["uniform", "coupled"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more reasonattn fit arguments")
    return parser.parse_args()


def run(args, strategy: str, seed: int, out: Path) -> dict:
    log_dir = out / f"{strategy}-{seed}"
    cmd = [
        sys.executable, "-m", "lightning_reasonattn.cli", "fit", "--config", args.config,
        "--seed_everything", str(seed),
        "--model.credit.strategy", strategy,
        "--trainer.max_steps", str(args.steps),
        "--trainer.val_check_interval", str(args.val_every),
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger.init_args.save_dir", str(log_dir),
        "--trainer.callbacks", "[]",
        "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false",
        *args.extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{strategy} seed {seed} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    (path,) = log_dir.rglob("metrics.csv")
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    val = [float(r["val/reward"]) for r in rows if r.get("val/reward")]
    train = [float(r["reward"]) for r in rows if r.get("reward")]
    return {"val_first": val[0], "val_last": val[-1], "train_last10": statistics.mean(train[-10:]), "vals": val}


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main() -> None:
    args = parse_args()
    results: dict[str, list[dict]] = {s: [] for s in args.strategies}
    with tempfile.TemporaryDirectory(prefix="compare-credit-") as tmp:
        for seed in args.seeds:  # seeds outermost: a busy spell of the machine hits every strategy alike
            for strategy in args.strategies:
                t0 = time.perf_counter()
                r = run(args, strategy, seed, Path(tmp))
                results[strategy].append(r)
                vals = ", ".join(f"{v:.2f}" for v in r["vals"])
                print(f"  {strategy} seed {seed}: val/reward {vals}; {time.perf_counter() - t0:.0f} s", flush=True)
    print()
    config = Path(args.config).resolve()
    shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config.name
    print(f"config {shown}, {args.steps} steps, seeds {args.seeds}, validation every {args.val_every} steps")
    header = f"{'strategy':<14} | {'val first':>15} | {'val last':>15} | {'train last 10':>15}"
    print(header)
    print("-" * len(header))
    for s, runs in results.items():
        cells = [mean_sd([r[k] for r in runs]) for k in ("val_first", "val_last", "train_last10")]
        print(f"{s:<14} | {cells[0]:>15} | {cells[1]:>15} | {cells[2]:>15}")
    if "uniform" in results:
        print()
        print("differences against uniform (mean over seeds of the paired difference, same seed)")
        base = results["uniform"]
        for s, runs in results.items():
            if s == "uniform":
                continue
            diffs = [r["val_last"] - b["val_last"] for r, b in zip(runs, base, strict=True)]
            print(f"  {s} - uniform, val last: {mean_sd(diffs)}")


if __name__ == "__main__":
    main()
