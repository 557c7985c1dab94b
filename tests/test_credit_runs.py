"""benchmarks/credit_from_scratch.py's RL table and report: paired cells (a seed fixes the prompts and the first
draws), finished cells kept, the paired statistics against hand-worked values."""

import importlib
import json
import math

import pytest
import torch
from conftest import load_script

TINY = dict(seed=0, task_seed=3, difficulty=3, n_test=40, n_eval=20, n_val=6, n_pretrain=200, n_layer=1, n_head=2,
            n_embd=16, batch_size=4, lr=2e-3, max_steps=2, eval_every=1, stop_at=1.0, max_new_tokens=8)  # fmt: skip


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/credit_from_scratch.py")


@pytest.fixture(scope="module")
def runs(script):
    return importlib.import_module("credit_runs")  # (benchmarks/ is on sys.path once the script is loaded)


@pytest.fixture(scope="module")
def report(script):
    return importlib.import_module("credit_report")


def test_paired_statistics_by_hand(report):
    p = report.paired([0.1, 0.0, 0.2])  # mean 0.1, sd 0.1, n 3: t(0.975, 2) = 4.303, t(0.8, 2) = 1.061
    assert p["mean"] == pytest.approx(0.1) and p["sd"] == pytest.approx(0.1) and p["seeds"] == 3
    assert p["half_width"] == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert p["ci"] == pytest.approx([0.1 - 0.24843, 0.1 + 0.24843], abs=1e-5)
    assert p["detectable_80"] == pytest.approx((4.303 + 1.061) * 0.1 / math.sqrt(3))
    low, high = p["bootstrap_ci"]  # resampled means stay in the range of the differences
    assert -1e-12 <= low <= 0.1 <= high <= 0.2 + 1e-12
    many = report.paired([0.01 * (i % 5) for i in range(40)])  # past 30 degrees of freedom: the normal's quantile
    assert many["half_width"] == pytest.approx(1.960 * many["sd"] / math.sqrt(40))


def test_cells_are_paired_by_seed_and_finished_ones_kept(script, runs, report, tmp_path):
    torch.set_num_threads(1)
    _, _, record = script.start_model(dict(TINY), tmp_path, log=lambda line: None)
    rl = runs.RLSettings(steps=2, prompts=2, group=2, lr=1e-3, eval_every=1, n_eval=4, n_train=20, max_new_tokens=8)
    task = {k: v for k, v in record["task"].items() if k != "n_test_at_most"}
    lines = []
    runs.run_table(tmp_path / "start", tmp_path, ["uniform", "coupled"], range(2), rl, task, 1, log=lines.append)
    assert lines[0] == "4 cells to run (0 finished kept), 1 at a time"
    first = {}
    for strategy in ("uniform", "coupled"):
        for seed in (0, 1):
            result = runs.read_result(tmp_path, strategy, seed)
            assert [point["step"] for point in result["curve"]] == [1, 2]
            assert result["final"] == result["curve"][-1]["accuracy"]
            logs = runs.cell_folder(tmp_path, strategy, seed) / "logs" / "completions.jsonl"
            rows = [json.loads(line) for line in logs.read_text().splitlines()]
            first[strategy, seed] = [row for row in rows if row["step"] == rows[0]["step"]]  # the first step's
    # one seed: the same prompts and the same first completions whatever the strategy; another seed: other ones
    assert first["uniform", 0] == first["coupled", 0] and first["uniform", 1] == first["coupled", 1]
    assert first["uniform", 0] != first["uniform", 1]
    kept = []
    runs.run_table(tmp_path / "start", tmp_path, ["uniform", "coupled"], range(2), rl, task, 1, log=kept.append)
    assert kept == ["0 cells to run (4 finished kept), 1 at a time"]
    summary = report.summarize(tmp_path, {"held_out": {"accuracy": 0.5}}, ["uniform", "coupled"], range(2))
    diffs = [runs.read_result(tmp_path, "coupled", s)["final"] - runs.read_result(tmp_path, "uniform", s)["final"]
             for s in (0, 1)]  # fmt: skip
    assert summary["pairs"]["coupled - uniform"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert summary["gain"]["uniform"] == pytest.approx(summary["final"]["uniform"] - 0.5)


def test_the_summary_pairs_final_and_curve_means_by_seed(report, tmp_path):
    """Hand-made cells: the final and the mean over the evaluations, each paired by seed, against worked values."""
    curves = {("uniform", 0): [0.30, 0.40], ("uniform", 1): [0.20, 0.50],
              ("coupled", 0): [0.40, 0.40], ("coupled", 1): [0.30, 0.60], ("coupled", 2): [0.9, 0.9]}  # fmt: skip
    for (strategy, seed), accuracies in curves.items():
        folder = tmp_path / "runs" / strategy / f"seed_{seed}"
        folder.mkdir(parents=True)
        curve = [{"step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(accuracies)]
        (folder / "result.json").write_text(json.dumps({"curve": curve, "final": accuracies[-1]}))
    summary = report.summarize(tmp_path, {"held_out": {"accuracy": 0.25}}, ["uniform", "coupled"], range(3))
    # seed 2 has no uniform cell: left out of the pairs; finals d = 0.0, 0.1; curve means d = 0.05, 0.1
    final, faster = summary["pairs"]["coupled - uniform"], summary["pairs_curve_mean"]["coupled - uniform"]
    assert final["seeds"] == faster["seeds"] == 2
    assert final["mean"] == pytest.approx(0.05) and faster["mean"] == pytest.approx(0.075)
    assert summary["final"]["coupled"] == pytest.approx((0.4 + 0.6 + 0.9) / 3)
    assert summary["curves"]["uniform"]["mean"] == pytest.approx([0.25, 0.45])
    assert "| coupled - uniform | +0.075 |" in report.table(summary)


def test_the_published_table_is_the_committed_runs():
    """docs/from_scratch.md and summary.json say what the committed per-run results give (plain arithmetic here)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    folder = root / "benchmarks" / "results" / "credit_from_scratch"
    summary = json.loads((folder / "summary.json").read_text())
    page = (root / "docs" / "from_scratch.md").read_text()
    finals = {}
    for path in folder.glob("*-seed*.json"):
        strategy, seed = path.stem.rsplit("-seed", 1)
        finals.setdefault(strategy, {})[int(seed)] = json.loads(path.read_text())["final"]
    assert sorted(finals) == sorted(summary["final"]) and all(len(f) == 8 for f in finals.values())
    for strategy, by_seed in finals.items():
        assert summary["final"][strategy] == pytest.approx(sum(by_seed.values()) / 8)
        if strategy == "uniform":
            continue
        d = [by_seed[s] - finals["uniform"][s] for s in range(8)]
        mean = sum(d) / 8
        half = 2.365 * math.sqrt(sum((x - mean) ** 2 for x in d) / 7) / math.sqrt(8)  # t(0.975, 7)
        pair = summary["pairs"][f"{strategy} - uniform"]
        assert pair["mean"] == pytest.approx(mean) and pair["half_width"] == pytest.approx(half, rel=1e-3)
        row = f"{mean:+.3f} | [{mean - half:+.3f}, {mean + half:+.3f}]"
        assert f"{strategy} - uniform" in page and row in page.replace("**", ""), row
    assert f"{summary['start']:.1%}" in page and f"+{summary['gain']['uniform']:.3f}" in page
