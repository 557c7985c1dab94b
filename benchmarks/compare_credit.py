"""Credit strategies side by side: one config trained with each strategy over several seeds, scored on held-out
problems along the way; paired differences against plain GRPO with 95% intervals; a learning-curve plot.

Usage::

    nice -n 10 python benchmarks/compare_credit.py --out credit_runs --plot credit_curves.png   # CPU, ~2 h
    python benchmarks/compare_credit.py --out pilot --strategies uniform coupled --seeds 0 --steps 2 \\
        --val-every 1 --extra --model.task.n_test 8                                             # a smoke run
    python benchmarks/compare_credit.py --config examples/grpo_countdown_qwen3_4b.yaml --steps 200 \\
        --val-every 50 --out countdown_runs                                                     # a GPU

Every (strategy, seed) is one ``reasonattn fit`` run in a fresh process, with ``seed_everything`` set to the
seed (sampling, the prompt order and the adapter's initialisation all follow it), the same steps and
validation every ``--val-every`` steps: ``val/reward`` is one greedy completion per held-out problem (the
task's test split, never trained on). The held-out reward before training is measured once with
``reasonattn validate`` (the adapter starts as the identity, so it is the same for every strategy and seed)
and is the curve's step 0.

Resumable: each finished run writes ``OUT/<strategy>-seed<seed>.json``, and a run whose file exists is not
run again, so an interrupted comparison continues where it stopped (a run cut off midway starts over).
Seeds are the outer loop, so a busy spell of the machine hits every strategy of a seed alike, and a comparison
stopped early still has complete seeds.

Printed last: per strategy, the mean ± sd over seeds of the held-out reward at the last validation and
averaged over all validations after step 0 (less noisy), and of the training reward over the last 10 steps;
then the paired differences against ``uniform`` (same seed: same prompts, same held-out set) with 95%
t-intervals; then how many seeds would resolve a given gap (``--target-gap``, default the paper's 52.6 ->
63.1, +10.5 points) at the observed spread, for a few held-out set sizes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("uniform", "random", "entropy", "coupled")
Z_975, Z_80 = 1.959964, 0.841621  # standard normal quantiles: two-sided 5% test, 80% power


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "examples" / "grpo_cpu_word_problems.yaml"))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's max_steps)")
    parser.add_argument("--val-every", type=int, default=None, help="steps between validations (default: config)")
    parser.add_argument("--out", default="compare_credit_out", help="folder of the per-run results (resumable)")
    parser.add_argument("--plot", default=None, help="write the learning curves to this PNG")
    parser.add_argument("--target-gap", type=float, default=0.105, help="gap to size the sample for (0.105)")
    parser.add_argument(
        "--report-only", action="store_true", help="tabulate the finished runs in --out, run nothing new"
    )
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more reasonattn fit arguments")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------ statistics


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t distribution (bisection on its CDF, integrated with Simpson's rule).

    Example:
        >>> round(t_quantile(0.975, 3), 3), round(t_quantile(0.975, 30), 3)
        (3.182, 2.042)
    """
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile(p={p}, df={df}): pass 0.5 <= p < 1 and df >= 1.")
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t: float, n: int = 2000) -> float:  # 0.5 + integral of the density from 0 to t
        h = t / n
        f = [math.exp(log_c - (df + 1) / 2 * math.log1p((i * h) ** 2 / df)) for i in range(n + 1)]
        return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    low, high = 0.0, 1.0
    while cdf(high) < p:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


def paired_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean paired difference and its t-interval (``nan`` bounds for one pair).

    Example:
        >>> mean, low, high = paired_interval([0.1, 0.3])  # sd 0.1414, t(0.975, 1) = 12.706
        >>> round(mean, 3), round(low, 3), round(high, 3)
        (0.2, -1.071, 1.471)
    """
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(0.5 + level / 2, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def seeds_needed(sd: float, gap: float) -> int:
    """Pairs for a two-sided 5% paired test to find ``gap`` with 80% power when paired differences have this
    ``sd``: ``((z_0.975 + z_0.8) sd / gap)^2`` (normal approximation), at least 2.

    Example:
        >>> seeds_needed(0.1, 0.105)  # (2.8 * 0.1 / 0.105)^2 = 7.1
        8
    """
    return max(2, math.ceil(((Z_975 + Z_80) * sd / gap) ** 2))


def sample_size_lines(diffs_sd: float, reward: float, n_test: int, gap: float) -> list[str]:
    """How many seeds resolve ``gap`` for a few held-out set sizes.

    A paired difference of held-out rewards varies with the training run (seed) and with which problems the
    test set happens to hold. The latter is at most ``2 p (1 - p) / n_test`` (the two runs' answers counted
    as independent, p = the mean held-out reward); what the observed variance holds beyond it is put down to
    training, which more held-out problems cannot shrink.
    """
    sampling = 2 * reward * (1 - reward) / n_test
    training = max(0.0, diffs_sd**2 - sampling)
    lines = [
        f"observed sd of a paired difference {diffs_sd:.3f}: held-out sampling <= {math.sqrt(sampling):.3f} "
        f"({n_test} problems, reward {reward:.2f}), training spread >= {math.sqrt(training):.3f}"
    ]
    for m in sorted({n_test, 100, 200, 500, 1000}):
        sd = math.sqrt(training + 2 * reward * (1 - reward) / m)
        lines.append(f"  {m:>5} held-out problems: {seeds_needed(sd, gap):>4} seeds per strategy")
    return lines


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


# ---------------------------------------------------------------------------------------------- runs


def fit_command(args, strategy: str, seed: int, log_dir: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "lightning_reasonattn.cli", "fit", "--config", args.config,
        "--seed_everything", str(seed),
        "--model.credit.strategy", strategy,
        "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger.init_args.save_dir", str(log_dir),
        "--trainer.callbacks", "[]",
        "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    if args.steps is not None:
        cmd += ["--trainer.max_steps", str(args.steps)]
    if args.val_every is not None:
        cmd += ["--trainer.val_check_interval", str(args.val_every)]
    return cmd + args.extra


def run_to_file(cmd: list[str], log_dir: Path, what: str) -> str:
    """Run a ``reasonattn`` command with its output in ``log_dir/output.txt``; that output."""
    shutil.rmtree(log_dir, ignore_errors=True)  # a run cut off midway starts over
    log_dir.mkdir(parents=True)
    with open(log_dir / "output.txt", "w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, cwd=ROOT)
    text = (log_dir / "output.txt").read_text()
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}); its output is in {log_dir}:\n{text[-3000:]}")
    return text


def run_logged(cmd: list[str], log_dir: Path, what: str) -> list[dict]:
    """Run a ``reasonattn fit`` whose CSV logger writes under ``log_dir``; its metrics.csv rows."""
    run_to_file(cmd, log_dir, what)
    (path,) = log_dir.rglob("metrics.csv")
    with open(path) as fh:
        return list(csv.DictReader(fh))


def baseline(args, out: Path) -> dict:
    """Held-out reward before training (``reasonattn validate`` with the untrained adapter), cached."""
    path = out / "baseline.json"
    if path.exists():
        return json.loads(path.read_text())
    cmd = [
        sys.executable, "-m", "lightning_reasonattn.cli", "validate", "--config", args.config,
        "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
        *args.extra,
    ]  # fmt: skip
    start = time.perf_counter()
    text = run_to_file(cmd, out / "logs" / "baseline", "the baseline validation")
    # validate writes no log folder; it prints each metric as a last line "name = value"
    values = dict(line.split(" = ", 1) for line in text.splitlines() if line.startswith("val/") and " = " in line)
    result = {
        "val_reward": float(values["val/reward"]),
        "val_length": float(values["val/completions/mean_length"]),
        "seconds": time.perf_counter() - start,
    }
    path.write_text(json.dumps(result, indent=1))
    return result


def train(args, strategy: str, seed: int, out: Path) -> dict:
    """One (strategy, seed) run, or its saved result."""
    path = out / f"{strategy}-seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    log_dir = out / "logs" / f"{strategy}-seed{seed}"
    start = time.perf_counter()
    rows = run_logged(fit_command(args, strategy, seed, log_dir), log_dir, f"{strategy} seed {seed}")
    val = [(int(r["step"]), float(r["val/reward"])) for r in rows if r.get("val/reward")]
    train_rows = [r for r in rows if r.get("reward")]
    if not val:
        raise RuntimeError(f"{strategy} seed {seed} logged no val/reward: set --val-every to at most --steps.")
    result = {
        "strategy": strategy,
        "seed": seed,
        "val_steps": [s for s, _ in val],
        "val_reward": [v for _, v in val],
        "train_reward": [float(r["reward"]) for r in train_rows],
        "train_length": [float(r["completions/mean_length"]) for r in train_rows],
        "seconds": time.perf_counter() - start,
    }
    path.write_text(json.dumps(result, indent=1))
    return result


# ------------------------------------------------------------------------------------------- reports


def plot(results: dict[str, list[dict]], start: float, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for strategy, runs in results.items():
        steps = [0, *(s + 1 for s in runs[0]["val_steps"])]  # logged at the last step's index: after s + 1 steps
        curves = [[start, *r["val_reward"]] for r in runs]
        mean = [statistics.mean(c) for c in zip(*curves, strict=True)]
        sd = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in zip(*curves, strict=True)]
        (line,) = ax.plot(steps, mean, marker="o", ms=3, label=f"{strategy} ({len(runs)} seeds)")
        low, high = [m - s for m, s in zip(mean, sd, strict=True)], [m + s for m, s in zip(mean, sd, strict=True)]
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out reward (greedy)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def summary(results: dict[str, list[dict]], start: dict, args, n_test: int | None) -> list[str]:
    def avg_val(r: dict) -> float:
        return statistics.mean(r["val_reward"])

    lines = []
    header = (
        f"{'strategy':<10} | {'seeds':>5} | {'val last':>15} | {'val mean':>15} | {'train last 10':>15} | "
        f"{'min/run':>7}"
    )
    lines += [header, "-" * len(header)]
    for s, runs in results.items():
        cells = [
            mean_sd([r["val_reward"][-1] for r in runs]),
            mean_sd([avg_val(r) for r in runs]),
            mean_sd([statistics.mean(r["train_reward"][-10:]) for r in runs]),
        ]
        minutes = statistics.mean(r["seconds"] for r in runs) / 60
        lines.append(f"{s:<10} | {len(runs):>5} | {cells[0]:>15} | {cells[1]:>15} | {cells[2]:>15} | {minutes:>7.1f}")
    lines.append(f"held-out reward before training: {start['val_reward']:.3f} (step 0, every strategy and seed)")
    if "uniform" not in results or len(results) < 2:
        return lines
    base = {r["seed"]: r for r in results["uniform"]}
    lines += ["", "paired differences against uniform (same seed), mean [95% t-interval]"]
    sds = []
    for s, runs in results.items():
        if s == "uniform":
            continue
        pairs = [(r, base[r["seed"]]) for r in runs if r["seed"] in base]
        cells = []
        for name, value in (("val last", lambda r: r["val_reward"][-1]), ("val mean", avg_val)):
            diffs = [value(a) - value(b) for a, b in pairs]
            mean, low, high = paired_interval(diffs)
            cells.append(f"{name} {mean:+.3f} [{low:+.3f}, {high:+.3f}]")
            if name == "val last" and len(diffs) > 1:
                sds.append((len(diffs) - 1, statistics.variance(diffs)))
        lines.append(f"  {s + ' - uniform':<20} ({len(pairs)} seeds): " + ";  ".join(cells))
    if sds and n_test:
        reward = statistics.mean(r["val_reward"][-1] for runs in results.values() for r in runs)
        lines += ["", f"seeds needed to resolve a gap of {args.target_gap:+.3f} in val last (5% two-sided, 80% power):"]
        # the strategies' paired variances pooled, weighted by their degrees of freedom
        pooled = math.sqrt(sum(df * var for df, var in sds) / sum(df for df, _ in sds))
        lines += sample_size_lines(pooled, reward, n_test, args.target_gap)
    return lines


def test_size(args) -> int | None:
    """The held-out set size: ``--model.task.n_test`` in ``--extra``, else the config's."""
    if "--model.task.n_test" in args.extra:
        return int(args.extra[args.extra.index("--model.task.n_test") + 1])
    import yaml

    config = yaml.safe_load(Path(args.config).read_text())
    return ((config.get("model") or {}).get("task") or {}).get("n_test")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = baseline(args, out)
    print(f"baseline val/reward {start['val_reward']:.3f} ({start['seconds']:.0f} s)", flush=True)
    results: dict[str, list[dict]] = {s: [] for s in args.strategies}
    for seed in args.seeds:
        for strategy in args.strategies:
            if args.report_only and not (out / f"{strategy}-seed{seed}.json").exists():
                continue
            r = train(args, strategy, seed, out)
            results[strategy].append(r)
            vals = ", ".join(f"{v:.2f}" for v in r["val_reward"])
            print(f"  {strategy} seed {seed}: val/reward {vals}; {r['seconds']:.0f} s", flush=True)
    results = {s: runs for s, runs in results.items() if runs}
    config = Path(args.config).resolve()
    shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config.name
    runs = next(iter(results.values()))
    steps, val_steps = len(runs[0]["train_reward"]), runs[0]["val_steps"]
    title = f"{shown}: {steps} steps"
    if args.plot:
        plot(results, start["val_reward"], args.plot, title + " (band: ±1 sd over seeds)")
    total = sum(r["seconds"] for rs in results.values() for r in rs) + start["seconds"]
    print()
    after = [s + 1 for s in val_steps]  # a validation is logged at the index of the step before it
    print(f"config {shown}, {steps} steps, seeds {args.seeds}, validations after steps {after}")
    print(f"{sum(len(rs) for rs in results.values())} runs, {total / 60:.0f} min of run time in all")
    if args.extra:
        print(f"extra arguments: {' '.join(args.extra)}")
    print("\n".join(summary(results, start, args, test_size(args))))


if __name__ == "__main__":
    main()
