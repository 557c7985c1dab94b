"""Every benchmark runs: a smoke run of each script on a tiny model, so that a change cannot break one silently.

Each script runs as a user runs it (a subprocess from the repository root), with the smallest settings: a
2-layer random model, one step, a few tokens. The test asserts that it exits 0 and prints its table; no time is
asserted (the figures of a smoke run mean nothing). The runs start together, as many at once as the machine has
cores (one thread each), when the first of them is needed, so the file costs about the slowest few runs.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_reasonattn.testing import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "32", "--layers", "2"]  # the benchmarks' own random models, at their smallest
SMOKE_TIMEOUT = 900  # seconds per run: a generous bound for a busy machine; an idle one takes 10-60 s each

# name -> (command from the repository root, {model} and {out} filled in; strings the output must hold). The
# slowest first: the runs start in this order, so the quick ones fill the gaps.
SMOKE_RUNS = {
    "bench_grpo": (  # every route, TRL's too (trl is in the dev extra)
        ["benchmarks/bench_grpo.py", "--steps", "1", "--warmup", "0", "--repeats", "1", "--prompts", "2",
         "--group", "2", "--max-new-tokens", "4", *TINY, "--heads", "2", "--kv-heads", "1", "--n-prompts", "8",
         "--lora-r", "4", "--lora-alpha", "8"],
        ["| rollout backend", "\nuniform      | dense", "\nuniform-alt  | policy", "\ncoupled      | dense",
         "\ntrl          | policy", "RhythmGRPO step breakdown", "uniform / TRL step time"],
    ),
    "compare_credit": (
        ["benchmarks/compare_credit.py", "--out", "{out}", "--strategies", "uniform", "coupled", "--seeds", "0",
         "--steps", "1", "--val-every", "1", "--extra", "--model.model", "{model}", "--model.task.n_train", "8",
         "--model.task.n_test", "2", "--model.prompts_per_step", "2", "--model.group_size", "2",
         "--model.eval_batch_size", "2", "--model.sampling.max_new_tokens", "4", "--model.credit.horizon=[1, 2]"],
        ["strategy   | seeds", "paired differences against uniform", "coupled - uniform"],
    ),
    "gpu_checks.sh": (  # its GPU commands on the CPU at minimal size
        ["benchmarks/gpu_checks.sh", "{out}"],
        ["\nuniform      | dense", "\ncoupled   |"],
    ),
    "bench_ddp": (  # 1 and 2 processes (gloo)
        ["benchmarks/bench_ddp.py", "--steps", "1", "--warmup", "0", "--prompts", "2", "--group", "2",
         "--max-new-tokens", "4", *TINY],
        ["step s (median)", "scaling: 2 processes"],
    ),
    "bench_recipe": (
        ["benchmarks/bench_recipe.py", "--device", "cpu", "--shape", "llama-tiny", *TINY, "--steps", "1",
         "--warmup", "0", "--prompts", "2", "--group", "2", "--max-new-tokens", "4", "--n-train", "8"],
        ["strategy  |  step s", "\nuniform   |", "\ncoupled   |", "coupled over uniform, step"],
    ),
    "bench_capture": (
        ["benchmarks/bench_capture.py", "--sizes", "64", "--repeats", "1", *TINY, "--heads", "2", "--kv-heads", "1"],
        ["| route       |", "capture/plain time", "gpt_capture"],
    ),
    "bench_update_memory": (
        ["benchmarks/bench_update_memory.py", "--layers", "1", "--batch", "1", "--prompt", "4", "--completion", "4",
         "--model-vocab", "128"],
        ["saved for backward MiB", "reasonattn / trl-like"],
    ),
    "bench_rewards_hostile": (
        ["benchmarks/bench_rewards_hostile.py", "--repeats", "0"],
        ["hostile completion", "per reward over"],
    ),
    "measure_task": (
        ["benchmarks/measure_task.py", "arithmetic:difficulty=0", "word_problems:difficulty=1", "--model", "{model}",
         "--n", "2", "--max-new-tokens", "4", "--batch", "2", "--show", "0"],
        ["accuracy [95% CI]", "\nword_problems:difficulty=1 greedy"],
    ),
    "bench_startup": (  # this checkout against itself
        ["benchmarks/bench_startup.py", "--before", ".", "--repeats", "1"],
        ["| import lightning_reasonattn ", "reasonattn --help", "before / after, reasonattn --help"],
    ),
    "credit_from_scratch": (  # a 1-layer start model (2 steps), an RL step's pieces timed, a table of 2 cells
        ["benchmarks/credit_from_scratch.py", "--out", "{out}", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
         "--n-pretrain", "64", "--n-test", "16", "--n-eval", "8", "--n-val", "4", "--max-steps", "2",
         "--eval-every", "1", "--accept", "0", "1", "--max-new-tokens", "8", "--measure", "--prompts", "2",
         "--group", "2", "--repeats", "1", "--spread-prompts", "2", "--rl", "--strategies", "uniform", "coupled",
         "--seeds", "1", "--workers", "1", "--rl-steps", "2", "--rl-eval-every", "1", "--rl-n-eval", "4",
         "--rl-prompts", "2", "--rl-group", "2", "--rl-n-train", "20", "--survey", "4"],
        ["validation accuracy", "| rollout, KV cache", "steps/hour per process", "rollout prefix recomputed / KV",
         "2 cells to run", "| coupled - uniform |", "| FAI-preceded lift |", "curves.png"],
    ),
    "knockout_from_scratch": (
        ["benchmarks/knockout_from_scratch.py", "--out", "{out}", "--max-steps", "2", "--n-layer", "2", "--n-head",
         "2", "--n-embd", "32", "--n-train", "64", "--n-test", "8", "--boot", "50"],
        ["Knockout: mean NLL increase", "\nAnchor tokens, global heads only", "held-out answers right",
         "anchors / position (after):"],
    ),
    "bench_monitor": (
        ["benchmarks/bench_monitor.py", "--steps", "2", "--every", "1", "--repeats", "1", "--batch", "2",
         "--length", "16", *TINY],
        ["fit s (median)", "overhead (target"],
    ),
}  # fmt: skip


def _command(name: str, model: Path, out: Path) -> list[str]:
    args = [a.format(model=model, out=out) for a in SMOKE_RUNS[name][0]]
    return ["bash", *args] if name.endswith(".sh") else [sys.executable, *args]


def _run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(command, -1, err.stdout or "", f"timed out after {SMOKE_TIMEOUT} s")


@pytest.fixture(scope="module")
def smoke_runs(request, tmp_path_factory):
    """The selected smoke runs, started together (as many at once as there are cores): name -> future."""
    selected = [item.callspec.params["name"] for item in request.session.items
                if getattr(item, "module", None) is sys.modules[__name__] and hasattr(item, "callspec")]  # fmt: skip
    root = tmp_path_factory.mktemp("benchmarks")
    model = tiny_checkpoint(root / "tiny", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "DEVICE": "cpu", "SMOKE": "1", "PYTHON": sys.executable}  # fmt: skip
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(len(selected), os.cpu_count() or 1)))
    futures = {name: pool.submit(_run, _command(name, model, root / name.replace(".", "_")), env) for name in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("name", list(SMOKE_RUNS))
def test_benchmark_smoke_run(name, smoke_runs):
    done = smoke_runs[name].result()
    tail = f"\n--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{' '.join(done.args)} exited {done.returncode}{tail}"
    missing = [text for text in SMOKE_RUNS[name][1] if text not in done.stdout]
    assert not missing, f"{name} printed no {missing}{tail}"
    assert "FAILED" not in done.stdout, f"{name}: a route failed{tail}"


def test_peak_memory_counts_what_a_region_allocates():
    """benchmarks/peak_memory.py (a module the benchmarks import): a 64 MiB tensor made after reset() counts."""
    spec = importlib.util.spec_from_file_location("peak_memory", ROOT / "benchmarks" / "peak_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    peak = module.PeakMemory("cpu")
    peak.reset()
    block = torch.ones(16 * 2**20)  # 64 MiB, written (so resident)
    extra = peak.extra_mb()
    assert block.nbytes / 2**20 - 1 <= extra < block.nbytes / 2**20 + 64
