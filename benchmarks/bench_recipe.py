"""The paper's recipe (examples/grpo_countdown_qwen3_4b.yaml) as written, uniform vs coupled credit, on a
random-weight model: step time, rollout and update tokens/s, peak GPU memory, ratios last.

Usage::

    python benchmarks/bench_recipe.py --device cuda --shape qwen3-0.6b                 # a GPU: ~3 min
    python benchmarks/bench_recipe.py --device cuda --shape qwen3-0.6b --max-new-tokens 1024 --prompts 16
    python benchmarks/bench_recipe.py --device cpu --shape llama-tiny --steps 1         # a quick run on CPU
    python benchmarks/bench_recipe.py --device cpu --shape llama-tiny --hidden 32 --layers 2 --steps 1 --warmup 0 \
        --prompts 2 --group 2 --max-new-tokens 4 --n-train 8                          # the tests' smoke run

Each strategy runs in a fresh subprocess through LightningCLI on the example config, with these overrides only:
the model (a random one of the given shape, with a byte-level BPE tokenizer trained on Countdown prompts), the
number of steps, prompts per step, completion length and a smaller Countdown pool (generating 20000 puzzles
takes minutes). Everything else is the recipe: NF4 double-quantized base, LoRA r=64 on every projection, bf16
(``precision: bf16-true``), gradient checkpointing, G=8, mini-batches of 8, 8-bit AdamW, coupled credit over
the five middle layers. On CPU the trainer runs in float32 (``--device cpu``).

Random weights never sample EOS, so every completion runs to ``--max-new-tokens``: the memory figure is the
recipe's worst case for that length. The figures per strategy are medians over the measured steps of what the
module logs (``tokens_per_sec/*``, ``memory/peak_gib``), plus the wall time of each step from a callback.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT_PREFIX = "RECIPE_RESULT "
CONFIG = Path(__file__).resolve().parent.parent / "examples" / "grpo_countdown_qwen3_4b.yaml"
STRATEGIES = ("uniform", "coupled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--shape", choices=("llama-tiny", "qwen3-0.6b"), default="qwen3-0.6b")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--steps", type=int, default=3, help="measured steps per strategy")
    parser.add_argument("--warmup", type=int, default=1, help="steps run first and not measured")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (the recipe: 16)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt (the recipe: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="completion length (the recipe: 1024)")
    parser.add_argument("--n-train", type=int, default=256, help="Countdown puzzles in the prompt pool")
    parser.add_argument("--hidden", type=int, default=256, help="llama-tiny: hidden size")
    parser.add_argument("--layers", type=int, default=8, help="llama-tiny: layers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_checkpoint(args, folder: Path) -> None:
    """A random model of ``args.shape`` and a BPE tokenizer trained on the recipe's Countdown prompts."""
    import torch
    from bench_grpo import model_config  # benchmarks/bench_grpo.py: the same shapes
    from transformers import AutoModelForCausalLM

    from lightning_reasonattn.tasks import generate_countdown
    from lightning_reasonattn.testing import tiny_tokenizer

    records = generate_countdown(args.n_train, seed=args.seed)
    tokenizer = tiny_tokenizer([r["prompt"] for r in records], vocab_size=512)
    heads = max(2, args.hidden // 32)  # head_dim 32 (8 heads at the default 256), at least 2 heads
    shape = argparse.Namespace(
        shape=args.shape,
        model_vocab=None,
        hidden=args.hidden,
        layers=args.layers,
        heads=heads,
        kv_heads=heads // 2,
        intermediate=None,
    )
    config = model_config(shape, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(args.seed)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def cli_args(args, strategy: str, model_dir: Path, log_dir: Path) -> list[str]:
    out = [
        "--config", str(CONFIG),
        "--model.model", str(model_dir),
        "--model.credit.strategy", strategy,
        "--model.prompts_per_step", str(args.prompts),
        "--model.group_size", str(args.group),
        "--model.sampling.max_new_tokens", str(args.max_new_tokens),
        "--model.task.n_train", str(args.n_train),
        "--model.task.n_test", "16",
        "--model.log_completions_every_n_steps", "0",
        "--trainer.max_steps", str(args.warmup + args.steps),
        "--trainer.logger.init_args.save_dir", str(log_dir),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.num_sanity_val_steps", "0",  # timing the training steps only
    ]  # fmt: skip
    if args.device == "cpu":
        out += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--model.optim.optimizer", "adamw"]
    return out


def worker(args) -> dict:
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.cli import LightningCLI

    from lightning_reasonattn.grpo import RhythmGRPO

    step_s: list[float] = []

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if args.device == "cuda":
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if args.device == "cuda":
                torch.cuda.synchronize()
            step_s.append(time.perf_counter() - self.t0)

    log_dir = Path(args.model_dir).parent / f"logs-{args.worker}"
    cli = LightningCLI(
        RhythmGRPO,
        args=cli_args(args, args.worker, Path(args.model_dir), log_dir),
        run=False,
        save_config_kwargs={"overwrite": True},
    )
    cli.trainer.callbacks.append(Timer())
    cli.trainer.fit(cli.model)
    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("reward")]
    measured = rows[args.warmup :]

    def median(key: str) -> float:
        values = [float(r[key]) for r in measured if r.get(key)]
        return statistics.median(values) if values else float("nan")

    return {
        "strategy": args.worker,
        "steps": len(measured),
        "step_s": statistics.median(step_s[args.warmup :]),
        "rollout_tps": median("tokens_per_sec/rollout"),
        "update_tps": median("tokens_per_sec/update"),
        "length": median("completions/mean_length"),
        "peak_gib": max((float(r["memory/peak_gib"]) for r in measured if r.get("memory/peak_gib")), default=0.0),
        "amplified": median("credit/amplified_frac"),
    }


def main() -> None:
    args = parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(args)), flush=True)
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as tmp:
        folder = Path(tmp) / "model"
        build_checkpoint(args, folder)
        config = json.loads((folder / "config.json").read_text())
        print(
            f"recipe {CONFIG.name} on a random {config['model_type']} ({args.shape}: {config['num_hidden_layers']} "
            f"layers, hidden {config['hidden_size']}, vocab {config['vocab_size']}), {args.device}; "
            f"{args.prompts} prompts x G={args.group}, {args.max_new_tokens} new tokens; "
            f"{args.warmup} warm-up + {args.steps} measured steps per strategy",
            flush=True,
        )
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
        for strategy in args.strategies:
            cmd = [sys.executable, __file__, "--worker", strategy, "--model-dir", str(folder)]
            for key in ("device", "shape", "steps", "warmup", "prompts", "group", "max_new_tokens", "n_train", "seed"):
                cmd += ["--" + key.replace("_", "-"), str(getattr(args, key))]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
            if out.returncode != 0 or not lines:
                print(f"\n{strategy} FAILED (exit {out.returncode}):\n{out.stderr[-6000:]}", flush=True)
                continue
            results[strategy] = json.loads(lines[-1][len(RESULT_PREFIX) :])
            print(f"  {strategy}: {time.perf_counter() - t0:.0f} s in all: {json.dumps(results[strategy])}", flush=True)

    print()
    header = (
        f"{'strategy':<9} | {'step s':>7} | {'rollout tok/s':>13} | {'update tok/s':>12} | {'mean len':>8} "
        f"| {'peak GiB':>8} | {'amplified':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in args.strategies:
        if name not in results:
            print(f"{name:<9} | failed (see above)")
            continue
        r = results[name]
        print(
            f"{name:<9} | {r['step_s']:>7.2f} | {r['rollout_tps']:>13.1f} | {r['update_tps']:>12.1f} | "
            f"{r['length']:>8.1f} | {r['peak_gib']:>8.2f} | {r['amplified']:>9.3f}"
        )
    uni, cou = results.get("uniform"), results.get("coupled")
    if uni and cou:
        print()
        print("ratios")
        print(f"  coupled over uniform, step: {100 * (cou['step_s'] / uni['step_s'] - 1):+6.1f}%  (target <= +5%)")
        print(f"  coupled / uniform update tok/s:    {cou['update_tps'] / uni['update_tps']:6.2f}x")
        if uni["peak_gib"] > 0:
            print(f"  coupled / uniform peak memory:     {cou['peak_gib'] / uni['peak_gib']:6.2f}x")
    if len(results) < len(args.strategies):
        sys.exit(1)


if __name__ == "__main__":
    main()
