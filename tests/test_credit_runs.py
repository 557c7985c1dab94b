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
