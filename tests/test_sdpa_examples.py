"""Smoke runs of what the SDPA route ships besides the library: the "watch the rhythm emerge" example and the
SDPA rows of the capture benchmark, on tiny settings."""

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("watch_rhythm_emerge", ROOT / "examples" / "watch_rhythm_emerge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worked_answers_are_right():
    example = load_example()
    assert example.worked_answer("3 - 2 + 6") == "3 - 2 = 1. 1 + 6 = 7. The answer is 7."
    prompt, answer = example.texts(1, seed=0)[0]
    assert prompt.startswith("Question: ") and prompt.endswith("Answer:") and answer.count("=") == 4
    tokenizer = example.WordTokenizer.from_corpus([prompt + answer, "Tom has 12 apples."])
    assert tokenizer.encode("Tom has 12 apples.") == [tokenizer.vocab.index(t) for t in "Tom has 1 2 apples .".split()]


def test_example_smoke_run(tmp_path):
    example = load_example()
    argv = ["--out", str(tmp_path), "--max-steps", "4", "--val-every", "2", "--batch-size", "4"]
    argv += ["--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--n-train", "16", "--n-val", "8"]
    threads = torch.get_num_threads()
    try:
        summary = example.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert {p.name for p in tmp_path.iterdir()} >= {"metrics.csv", "curves.png", "heads.json", "summary.json"}
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    waad = [float(r["rhythm/val/waad"]) for r in rows if r.get("rhythm/val/waad")]
    assert len(waad) == 3 and all(0 < w <= 10 for w in waad)  # before training, after steps 2 and 4
    heads = json.loads((tmp_path / "heads.json").read_text())
    assert [h["step"] for h in heads] == [0, 1, 3] and len(heads[0]["per_head"]) == 2  # 2 layers x 2 heads
    assert math.isfinite(summary["last"]["val_loss"]) and summary["parameters"] > 0


def test_benchmark_smoke_run():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_capture.py"), "--sizes", "32", "--repeats", "1"]
    cmd += ["--layers", "2", "--hidden", "16", "--heads", "2", "--kv-heads", "1"]
    cmd += ["--routes", "gpt_plain", "gpt_capture"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(line.split("|")[1].strip() == "gpt_capture" for line in lines if line.count("|") == 3)
    ratios = lines[lines.index(next(line for line in lines if line.startswith("SDPA route"))) + 3]
    assert ratios.split("|")[0].strip() == "32" and ratios.split("|")[1].strip().endswith("x")
