"""Credit strategies compared from scratch, phase 2: the RL runs (a table of cells, strategy x seed).

Each cell is one ``RhythmGRPO`` fit from the start model (``OUT/start``, phase 1), all of its weights trained, one
thread, with held-out validation (``val/reward``: the final number of one greedy completion of each held-out problem
right) every ``eval_every`` steps. A cell's seed fixes everything random in it: the order of the training prompts
(``task.shuffle_seed``), the keyed sampling of the completions (the run seed), and the ``random`` strategy's draws
(``credit.seed``); so a strategy and ``uniform`` with one seed start from the same model and sample the same first
rollouts, and differ from the first update on.

The cells run in ``workers`` processes at a time (one thread each). A finished cell writes ``OUT/runs/<strategy>/
seed_<s>/result.json`` (whole or not at all) and is skipped by a later run of the table; an interrupted cell is
run again from its start.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

STRATEGIES = ("uniform", "random", "entropy", "local_chunk", "global_anchor", "coupled")
RESULT = "result.json"


@dataclass(frozen=True)
class RLSettings:
    """What every cell of the table shares (the seed and strategy are the cell's)."""

    # the defaults are the published table's (docs/from_scratch.md): sized from a pilot (lr 3e-5 over 1e-4)
    steps: int = 400
    prompts: int = 8
    group: int = 8
    lr: float = 3e-5
    eval_every: int = 100
    n_eval: int = 1000
    n_train: int = 20000
    max_new_tokens: int = 48
    temperature: float = 1.0
    horizon: tuple[int, int] = (4, 32)
    layers: str = "all"
    beta: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "horizon", tuple(self.horizon))
        if self.steps % self.eval_every:
            raise ValueError(f"steps={self.steps} is not a multiple of eval_every={self.eval_every}.")


def final_number_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's final number is the answer, else 0.0 (no math-verify: the answers are integers)."""
    from lightning_reasonattn.rewards import numeric_answer_reward

    return numeric_answer_reward(prompts, completions, answer, use_math_verify=False)


def cell_folder(out: Path, strategy: str, seed: int) -> Path:
    return out / "runs" / strategy / f"seed_{seed}"


def read_result(out: Path, strategy: str, seed: int) -> dict | None:
    path = cell_folder(out, strategy, seed) / RESULT
    return json.loads(path.read_text()) if path.is_file() else None


def run_cell(start: Path, out: Path, strategy: str, seed: int, rl: RLSettings, task: dict) -> dict:
    """One RL run from the start model; its held-out accuracy at every evaluation, and its wall time."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from lightning_reasonattn import NanoGPT, WordTokenizer
    from lightning_reasonattn.grpo import RhythmGRPO

    torch.set_num_threads(1)
    folder = cell_folder(out, strategy, seed)
    logs = folder / "logs"
    if logs.exists():  # an interrupted run of this cell: start it again
        for path in sorted(logs.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    pl.seed_everything(seed, verbose=False)  # the run seed: keyed sampling
    module = RhythmGRPO(
        model=NanoGPT.load(start),
        tokenizer=WordTokenizer(vocab_file=start / "tokenizer.json"),
        task={**task, "n_train": rl.n_train, "n_test": rl.n_eval, "shuffle_seed": seed},
        rewards={"functions": ["credit_runs:final_number_reward"]},
        prompts_per_step=rl.prompts,
        group_size=rl.group,
        sampling={"max_new_tokens": rl.max_new_tokens, "temperature": rl.temperature},
        credit={"strategy": strategy, "seed": seed, "horizon": list(rl.horizon), "layers": rl.layers},
        loss={"beta": rl.beta},
        optim={"lr": rl.lr},
        log_completions_every_n_steps=max(1, rl.steps // 6),
        eval_batch_size=250,
    )
    trainer = pl.Trainer(
        max_steps=rl.steps,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(logs, name="", version=""),
        val_check_interval=rl.eval_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    t0 = time.perf_counter()
    trainer.fit(module)
    seconds = time.perf_counter() - t0
    curve = read_curve(logs / "metrics.csv")
    module.policy.eval().save(folder / "final")  # (NanoGPT.load reads it: the survey of the trained models)
    return {
        "strategy": strategy,
        "seed": seed,
        "settings": asdict(rl),
        "task": task,
        "curve": curve,
        "final": curve[-1]["accuracy"],
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
    }


def read_curve(metrics: Path) -> list[dict]:
    """``[{"step", "accuracy", "train_reward"}]`` at every evaluation, from the run's metrics.csv."""
    import csv

    rows = list(csv.DictReader(metrics.open()))
    rewards = {int(r["step"]): float(r["reward"]) for r in rows if r.get("reward")}
    curve = []
    for r in rows:
        if r.get("val/reward"):
            step = int(r["step"]) + 1  # Lightning logs validation at the step index of the last update
            recent = [v for s, v in rewards.items() if step - 10 < s + 1 <= step]
            curve.append({"step": step, "accuracy": float(r["val/reward"]),
                          "train_reward": sum(recent) / max(1, len(recent))})  # fmt: skip
    return curve


def _work(args: tuple) -> tuple[str, int, str | None]:
    start, out, strategy, seed, rl, task = args
    try:
        result = run_cell(start, out, strategy, seed, rl, task)
    except Exception:  # one failed cell must not stop the table: the others run, and it is reported
        return strategy, seed, traceback.format_exc()
    folder = cell_folder(out, strategy, seed)
    partial = folder / (RESULT + ".partial")
    partial.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(partial, folder / RESULT)  # whole or not at all
    return strategy, seed, None


def run_table(start: Path, out: Path, strategies, seeds, rl: RLSettings, task: dict, workers: int, log=print) -> None:
    """Every cell not yet finished, ``workers`` at a time, seeds in order (so a stopped table is most complete for
    the first seeds)."""
    todo = [(s, seed) for seed in seeds for s in strategies if read_result(out, s, seed) is None]
    done = len(strategies) * len(seeds) - len(todo)
    log(f"{len(todo)} cells to run ({done} finished kept), {workers} at a time")
    if not todo:
        return
    os.environ["OMP_NUM_THREADS"] = "1"
    jobs = [(start, out, s, seed, rl, task) for s, seed in todo]
    t0 = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # a clean process per worker (torch threads, Lightning state)
    with context.Pool(workers, maxtasksperchild=1) as pool:
        for i, (strategy, seed, error) in enumerate(pool.imap_unordered(_work, jobs), 1):
            status = "failed:\n" + error if error else f"final {read_result(out, strategy, seed)['final']:.3f}"
            log(f"  [{i}/{len(jobs)}, {time.perf_counter() - t0:6.0f} s] {strategy} seed {seed}: {status}")
