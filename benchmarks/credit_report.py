"""Credit strategies compared from scratch, phase 3: the table of paired differences, the curves, the summary.

For each strategy ``S`` and each seed ``s`` run for both, ``d_s = final(S, s) - final(uniform, s)``: the difference
of held-out accuracy after the last step, paired by seed (the same start, prompts and first draws). The table gives
the mean of ``d`` with its 95% t-interval (``mean +- t_{0.975, n-1} sd / sqrt(n)``), a paired bootstrap interval,
and the smallest difference the design detects with 80% power at 5% (two-sided), ``(t_{0.975} + t_{0.8}) sd /
sqrt(n)``, from the observed ``sd``.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

from credit_runs import STRATEGIES, read_result

# Student's t quantiles: 0.975 and 0.8, by degrees of freedom (1..30); past 30, the normal's.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131]
T975 += [2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
T80 = [1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870, 0.868, 0.866]
T80 += [0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854]


def t_quantile(table: list[float], df: int, normal: float) -> float:
    return table[df - 1] if df <= len(table) else normal


def paired(differences: list[float], seed: int = 0, resamples: int = 10000) -> dict:
    """Mean, t-interval, bootstrap interval, sd and the smallest detectable difference of paired ``differences``."""
    n = len(differences)
    mean = statistics.fmean(differences)
    sd = statistics.stdev(differences) if n > 1 else float("nan")
    t = t_quantile(T975, n - 1, 1.960) if n > 1 else float("nan")
    half = t * sd / math.sqrt(n) if n > 1 else float("nan")
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(differences, k=n)) for _ in range(resamples))
    detectable = (t + t_quantile(T80, n - 1, 0.842)) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "ci": [mean - half, mean + half], "half_width": half, "seeds": n, "sd": sd,
            "bootstrap_ci": [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]],
            "detectable_80": detectable}  # fmt: skip


def collect(out: Path, strategies, seeds) -> dict[str, dict[int, dict]]:
    """``{strategy: {seed: result}}`` of the finished cells."""
    found: dict[str, dict[int, dict]] = {}
    for strategy in strategies:
        for seed in seeds:
            result = read_result(out, strategy, seed)
            if result is not None:
                found.setdefault(strategy, {})[seed] = result
    return found


def curve_mean(result: dict) -> float:
    """The mean held-out accuracy over a run's evaluations (equally spaced: the area under the curve, per step)."""
    return statistics.fmean(point["accuracy"] for point in result["curve"])


def summarize(out: Path, start: dict, strategies=STRATEGIES, seeds=range(100), extra: dict | None = None) -> dict:
    """The machine-readable summary: start accuracy, paired differences against uniform, final accuracies."""
    results = collect(out, strategies, seeds)
    uniform = results.get("uniform", {})
    summary = {"start": start["held_out"]["accuracy"], "pairs": {}, "pairs_curve_mean": {}, "final": {}, "gain": {},
               "curves": {}}  # fmt: skip
    for strategy, runs in results.items():
        finals = [r["final"] for r in runs.values()]
        summary["final"][strategy] = statistics.fmean(finals)
        summary["gain"][strategy] = summary["final"][strategy] - summary["start"]
        steps = [point["step"] for point in next(iter(runs.values()))["curve"]]
        summary["curves"][strategy] = {
            "step": steps,
            "mean": [statistics.fmean(r["curve"][i]["accuracy"] for r in runs.values()) for i in range(len(steps))],
            "sd": [
                statistics.stdev(r["curve"][i]["accuracy"] for r in runs.values()) if len(runs) > 1 else 0.0
                for i in range(len(steps))
            ],  # fmt: skip
            "seeds": len(runs),
        }
        if strategy != "uniform":
            common = sorted(set(runs) & set(uniform))
            if common:
                diffs = [runs[s]["final"] - uniform[s]["final"] for s in common]
                summary["pairs"][f"{strategy} - uniform"] = paired(diffs)
                # learning faster, not only ending higher: the mean accuracy over the evaluations (the area under
                # the curve over its length), paired the same way
                diffs = [curve_mean(runs[s]) - curve_mean(uniform[s]) for s in common]
                summary["pairs_curve_mean"][f"{strategy} - uniform"] = paired(diffs)
    summary |= extra or {}
    return summary


def table(summary: dict) -> str:
    """The paired differences as a Markdown table."""
    header = "| strategy - uniform | mean | 95% CI (t) | half-width | bootstrap 95% CI | sd | detectable (80%) | n |"
    lines = [header, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, p in summary["pairs"].items():
        lines.append(
            f"| {name} | {p['mean']:+.3f} | [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}] | {p['half_width']:.3f} | "
            f"[{p['bootstrap_ci'][0]:+.3f}, {p['bootstrap_ci'][1]:+.3f}] | {p['sd']:.3f} | {p['detectable_80']:.3f} | "
            f"{p['seeds']} |"
        )
    if summary.get("pairs_curve_mean"):
        lines += ["", "| strategy - uniform, mean over the evaluations | mean | 95% CI (t) | detectable (80%) | n |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for name, p in summary["pairs_curve_mean"].items():
            lines.append(f"| {name} | {p['mean']:+.3f} | [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}] | "
                         f"{p['detectable_80']:.3f} | {p['seeds']} |")  # fmt: skip
    lines += ["", "| strategy | final accuracy (mean over seeds) | gain over the start |", "| --- | --- | --- |"]
    for name, value in summary["final"].items():
        lines.append(f"| {name} | {value:.3f} | {summary['gain'][name]:+.3f} |")
    if "survey" in summary:
        lines += ["", "| model | FAI-preceded lift | WAAD-followed lift | entropy at WAAD peaks / mean | seeds |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for name, s in summary["survey"].items():
            lines.append(
                f"| {name} | {s['fai_preceded_lift']:.2f} | {s['waad_followed_lift']:.2f} | {s['entropy_lift']:.2f} | "
                f"{s.get('seeds', 1)} |"
            )
    return "\n".join(lines)


def plot(summary: dict, path: Path, title: str) -> Path:
    """Held-out accuracy over the steps, per strategy: the mean over seeds and a band of one standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for name, curve in summary["curves"].items():
        steps = [0, *curve["step"]]
        mean = [summary["start"], *curve["mean"]]
        se = [0.0, *(sd / math.sqrt(max(1, curve["seeds"])) for sd in curve["sd"])]
        width = 2 if name in ("uniform", "coupled") else 1
        (line,) = ax.plot(steps, mean, label=f"{name} ({curve['seeds']} seeds)", lw=width)
        low = [m - s for m, s in zip(mean, se, strict=True)]
        high = [m + s for m, s in zip(mean, se, strict=True)]
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("RL step")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(summary: dict, folder: Path) -> None:
    """``summary.json`` and ``table.md`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "table.md").write_text(table(summary) + "\n")
