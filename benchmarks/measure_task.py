"""How a model starts on a task: accuracy and completion length, sampled and greedy, before any training.

Usage::

    python benchmarks/measure_task.py word_problems:difficulty=1:style=plain --temperature 0.5  # the embedded model
    python benchmarks/measure_task.py arithmetic:difficulty=0:style=r1 word_problems:difficulty=1 --n 64

Each positional argument is a task, ``NAME[:FIELD=VALUE...]`` with ``TaskSettings`` fields (``difficulty``,
``style``, ``chat``, ``seed``). Its held-out split (the problems that ``val/reward`` scores) is answered the
way RhythmGRPO answers it: the prompts through the chat template, the NF4 4-bit base with a fresh LoRA
adapter (which starts as the identity), completions sampled from the dense copy, scored by the task's
default reward (``numeric`` for arithmetic and word problems). Per task: one completion per problem sampled
at ``--temperature`` (what a training step sees), and one greedy (what ``val/reward`` sees).

The table gives the accuracy with a 95% Wilson interval, the mean and median completion length in tokens and
the fraction cut off at ``--max-new-tokens``. A task suits GRPO on this model when the sampled accuracy is
between about 20% and 60% (some groups then hold both right and wrong answers) and, for the credit
strategies, when completions are long enough for a rhythm (60-200 tokens).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import fields

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="+", help="NAME[:FIELD=VALUE...], e.g. word_problems:difficulty=2")
    parser.add_argument("--model", default=None, help="model name or folder (default: the embedded SmolLM2-135M)")
    parser.add_argument("--n", type=int, default=64, help="held-out problems per task")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--batch", type=int, default=16, help="prompts per generate call")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--show", type=int, default=2, help="completions printed per task")
    parser.add_argument("--no-greedy", action="store_true", help="sampled completions only")
    return parser.parse_args(argv)


def task_settings(spec: str, n: int):
    """``TaskSettings`` from ``NAME[:FIELD=VALUE...]`` (values read as int, bool or str)."""
    from lightning_reasonattn.grpo.settings import TaskSettings

    name, *pairs = spec.split(":")
    known = {f.name for f in fields(TaskSettings)}
    values: dict = {"name": name, "n_train": 1, "n_test": n}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"task {spec!r}: {pair!r} is not FIELD=VALUE with FIELD one of {sorted(known)}")
        values[key] = int(raw) if raw.lstrip("-").isdigit() else {"true": True, "false": False}.get(raw, raw)
    return TaskSettings(**values)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def answer(module, records: list[dict], temperature: float, batch: int) -> tuple[list, list, list, list]:
    """Rewards, completion lengths, truncation flags and texts of one completion per record."""
    from lightning_reasonattn.rewards import score_completions

    rewards, lengths, truncated, texts = [], [], [], []
    for i in range(0, len(records), batch):
        r = module.grpo_step().rollout(records[i : i + batch], group_size=1, temperature=temperature)
        total, _ = score_completions(module.reward_funcs, module.reward_weights, r.prompts, r.texts, r.columns)
        rewards += total.tolist()
        lengths += r.completion_mask.sum(-1).tolist()
        truncated += r.truncated.tolist()
        texts += r.texts
    return rewards, lengths, truncated, texts


def row(label: str, rewards: list[float], lengths: list[int], truncated: list[bool], seconds: float) -> str:
    n, k = len(rewards), sum(rw >= 1.0 for rw in rewards)
    low, high = wilson(k, n)
    accuracy = f"{k / n:.2f} [{low:.2f}, {high:.2f}]"
    return (
        f"{label:<44} | {accuracy:>17} | {statistics.mean(lengths):>8.0f} | {statistics.median(lengths):>6.0f} | "
        f"{sum(truncated) / n:>9.2f} | {seconds:>6.0f}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from lightning_reasonattn.grpo import RhythmGRPO
    from lightning_reasonattn.grpo.policy import dense_copy
    from lightning_reasonattn.grpo.settings import SamplingSettings

    settings = [task_settings(spec, args.n) for spec in args.tasks]
    sampling = SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    base = None
    lines = []
    for spec, task in zip(args.tasks, settings, strict=True):
        module = RhythmGRPO(model=args.model, task=task, sampling=sampling)
        if base is None:  # load the model once; the adapter is never trained, so every task can share it
            module.configure_model()
            module._dense = dense_copy(module.policy, module.sampling.backend, module.run.is_module)
            base = module
        else:
            module.policy, module.tokenizer, module._dense = base.policy, base.tokenizer, base._dense
        _, test = module._task_splits()
        modes = [(f"{spec} T={args.temperature:g}", args.temperature)]
        modes += [] if args.no_greedy else [(f"{spec} greedy", 0.0)]
        for label, temperature in modes:
            torch.manual_seed(args.seed)
            start = time.perf_counter()
            rewards, lengths, truncated, texts = answer(module, test, temperature, args.batch)
            lines.append(row(label, rewards, lengths, truncated, time.perf_counter() - start))
            print(lines[-1], flush=True)
            for text in texts[: args.show]:
                print("    " + repr(text[:300]), flush=True)
    print()
    model = args.model or "embedded SmolLM2-135M-Instruct"
    print(f"{model}, {args.n} held-out problems per task, max_new_tokens {args.max_new_tokens}, seed {args.seed}")
    header = f"{'task':<44} | {'accuracy [95% CI]':>17} | {'mean len':>8} | {'median':>6} | {'truncated':>9} | {'s':>6}"
    print(header)
    print("-" * len(header))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
