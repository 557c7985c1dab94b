"""Credit strategies compared from scratch, phase 1: the start model, pretrained on word problems, and what an RL
step on it costs.

    python benchmarks/credit_from_scratch.py --out credit_from_scratch            # pretrain the start model (or reuse)
    python benchmarks/credit_from_scratch.py --out credit_from_scratch --measure  # and time an RL step's pieces
    OMP_NUM_THREADS=1 python benchmarks/credit_from_scratch.py --out credit_from_scratch --rl --survey 256
        # phases 2 and 3: the table of docs/from_scratch.md (6 strategies x 8 seeds, resumable) and its report

The start model is [`NanoGPT`][lightning_reasonattn.models.NanoGPT] with a
[`WordTokenizer`][lightning_reasonattn.models.WordTokenizer], pretrained by next-token prediction on the built-in
word problems (``word_problems``, plain style: ``Question: ...\\nAnswer:``) followed by their worked answer
(``lightning_reasonattn.tasks.worked_answer``: `` 3 - 2 = 1. 1 + 6 = 7. The answer is 7.`` and the end token),
deterministically from ``--seed`` on one thread, until its greedy accuracy (the completion's final number equals the
answer, by ``numeric_answer_reward``) on a validation set reaches ``--stop-at``. Its accuracy is then measured on
``--n-eval`` held-out problems, greedy, through the rollout's decode loop (KV cache, batched), and must fall within
``--accept``.

Held out, never trained on. The RL phase draws its task as ``reasonattn fit`` does, ``task: {name: word_problems,
difficulty: D, style: plain, chat: false, seed: S, n_test: <= N}``: its test split is the first ``n_test`` problems
that ``TASKS["word_problems"].generate_splits`` draws from ``S``, whatever ``n_train`` is. Pretraining draws that
split for ``n_test = N`` (``--n-test``, 1000) and excludes its questions, and those of the validation problems,
from its own corpus (``generate_word_problems(..., exclude=...)``); the start accuracy is that of the first
``--n-eval`` test problems, which an RL run with ``n_test = n_eval`` evaluates on. ``start.json`` records the task
the RL runs must use.

The output folder's ``start/`` holds ``model.safetensors`` and ``config.json`` (``NanoGPT.load``),
``tokenizer.json`` (``WordTokenizer(vocab_file=...)``) and ``start.json`` (settings, task, accuracy, curve, wall
time). It is written whole at the end (a run stopped midway leaves none); a later run with the same settings
reuses it and says so, and one with other settings refuses the folder.

``--measure`` times, on the start model and one thread: a rollout of ``--prompts x --group`` completions (keyed
sampling at temperature 1) with and without the KV cache, the old-log-probability pass with the rhythm captured,
a forward and backward over that batch, the reward of the batch, and a greedy evaluation of the ``n_eval`` problems;
and the start model's sampled accuracy per group (how many groups have both right and wrong completions, the only
ones with a GRPO advantage). It prints the table, then the estimate of RL steps per hour per process, then the
ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from credit_report import plot, summarize, table, write  # benchmarks/: scripts run with it on sys.path
from credit_runs import STRATEGIES, RLSettings, run_table
from credit_survey import survey_runs

from lightning_reasonattn import NanoGPT, WordTokenizer
from lightning_reasonattn.functional.keyed import mix
from lightning_reasonattn.rewards import numeric_answer_reward
from lightning_reasonattn.rollout.decode import decode
from lightning_reasonattn.rollout.logprobs import measure
from lightning_reasonattn.rollout.prompts import encode_prompts
from lightning_reasonattn.rollout.sampling import sample, sample_batch
from lightning_reasonattn.settings import RhythmSettings
from lightning_reasonattn.tasks import generate_word_problems, worked_answer
from lightning_reasonattn.tasks.table import TASKS
from lightning_reasonattn.tasks.word_problems import GAIN, ITEMS, LOSS, NAMES

START = "start"
SETTINGS = ("seed", "task_seed", "difficulty", "n_test", "n_eval", "n_val", "n_pretrain", "n_layer", "n_head",
            "n_embd", "batch_size", "lr", "max_steps", "eval_every", "stop_at", "max_new_tokens")  # fmt: skip
VAL_SEED_OFFSET = 7919  # the validation problems' seed: task_seed + this (a stream no split of the task uses)


# ----------------------------------------------------------------------------------------------------- data
def task_test_split(s: dict) -> list[dict]:
    """The RL task's test split for ``n_test`` problems, drawn as ``reasonattn fit`` draws it."""
    options = dict(chat=False, difficulty=s["difficulty"], style="plain")
    return TASKS["word_problems"].generate_splits(0, s["n_test"], s["task_seed"], **options)[1]


def problems(s: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """``(pretrain, validation, held-out)`` records, no question in two of them."""
    test = task_test_split(s)
    options = dict(difficulty=s["difficulty"], style="plain", chat=False)
    held_out = {r["question"] for r in test}
    val = generate_word_problems(s["n_val"], s["task_seed"] + VAL_SEED_OFFSET, exclude=held_out, **options)
    seen = held_out | {r["question"] for r in val}
    pretrain = generate_word_problems(s["n_pretrain"], s["seed"], exclude=seen, **options)
    return pretrain, val, test[: s["n_eval"]]


def answer_text(record: dict) -> str:
    return " " + worked_answer(record["expression"])


def build_tokenizer(records: list[dict]) -> WordTokenizer:
    """Every token of the corpus and of the generator's templates (so every problem of the task encodes)."""
    templates = " ".join([*NAMES, *ITEMS, *GAIN, *LOSS, "0123456789", "he she How many does have now The answer is"])
    return WordTokenizer.from_corpus([templates] + [r["prompt"] + answer_text(r) for r in records])


def sequences(records: list[dict], tokenizer: WordTokenizer) -> list[torch.Tensor]:
    """Prompt, worked answer and end token, as ids."""
    end = [tokenizer.eos_token_id]
    return [torch.tensor(tokenizer.encode(r["prompt"] + answer_text(r)) + end) for r in records]


def right_padded(rows: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, True
    return ids, mask


# ------------------------------------------------------------------------------------------------ evaluation
def greedy_rewards(model, tokenizer, records, max_new_tokens: int, batch: int = 125) -> list[float]:
    """The numeric reward of each problem's greedy completion (the decode loop, KV cache, ``batch`` at a time)."""
    rewards = []
    for b0 in range(0, len(records), batch):
        chunk = records[b0 : b0 + batch]
        ids, mask = encode_prompts(tokenizer, [r["prompt"] for r in chunk])
        out = sample(model, ids, mask, [tokenizer.eos_token_id], tokenizer.pad_token_id, max_new_tokens, temperature=0)
        texts = tokenizer.batch_decode(out.ids, skip_special_tokens=True)
        rewards += numeric_answer_reward(None, texts, [r["answer"] for r in chunk], use_math_verify=False)
    return rewards


def spread(rewards: list[float]) -> dict:
    """Accuracy, its binomial standard error and the Wilson 95% interval."""
    n, p = len(rewards), sum(rewards) / max(1, len(rewards))
    z = 1.96
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return {"accuracy": p, "n": n, "se": math.sqrt(p * (1 - p) / max(1, n)),
            "ci95": [centre - half / (1 + z * z / n), centre + half / (1 + z * z / n)]}  # fmt: skip


# ------------------------------------------------------------------------------------------------- pretraining
def schedule(step: int, total: int) -> float:
    """Linear warm-up over 5% of ``total``, then cosine down to a tenth at ``total`` (the example's)."""
    warmup = max(1, total // 20)
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def pretrain(s: dict, log=print) -> tuple[NanoGPT, WordTokenizer, dict]:
    """Train until the validation accuracy reaches ``stop_at`` (or ``max_steps``); deterministic from ``seed``."""
    pretrain_records, val, _ = problems(s)
    tokenizer = build_tokenizer(pretrain_records)
    data = sequences(pretrain_records, tokenizer)
    longest_prompt = max(len(tokenizer.encode(r["prompt"])) for r in pretrain_records + val)
    block_size = max(max(len(d) for d in data), longest_prompt + s["max_new_tokens"])
    torch.manual_seed(s["seed"])
    model = NanoGPT(len(tokenizer), block_size, s["n_layer"], s["n_head"], s["n_embd"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=s["lr"], weight_decay=0.1, betas=(0.9, 0.95))
    lr_at = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step, s["max_steps"]))
    order = torch.Generator().manual_seed(s["seed"])
    curve, start, step, position, perm = [], time.perf_counter(), 0, len(data), None
    while True:
        if step % s["eval_every"] == 0 or step == s["max_steps"]:
            model.eval()
            accuracy = sum(greedy_rewards(model, tokenizer, val, s["max_new_tokens"])) / len(val)
            curve.append({"step": step, "val_accuracy": accuracy, "seconds": round(time.perf_counter() - start, 1)})
            log(f"  step {step:5d}  validation accuracy {accuracy:6.1%}  {curve[-1]['seconds']:7.1f} s")
            if accuracy >= s["stop_at"] or step == s["max_steps"]:
                break
        model.train()
        if position + s["batch_size"] > len(data):
            perm, position = torch.randperm(len(data), generator=order), 0
        rows = [data[i] for i in perm[position : position + s["batch_size"]]]
        position += s["batch_size"]
        ids, mask = right_padded(rows, tokenizer.pad_token_id)
        logits = model(ids)[:, :-1]
        target = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_at.step()
        step += 1
    info = {"steps": step, "reached_stop_at": curve[-1]["val_accuracy"] >= s["stop_at"], "curve": curve,
            "pretrain_seconds": round(time.perf_counter() - start, 1), "block_size": block_size,
            "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip
    return model.eval(), tokenizer, info


def start_model(s: dict, out: Path, log=print) -> tuple[NanoGPT, WordTokenizer, dict]:
    """The start model of ``out/start``: reused when its settings are these, else pretrained and saved there."""
    folder = out / START
    if (folder / "start.json").is_file():
        saved = json.loads((folder / "start.json").read_text())
        if saved["settings"] != s:
            other = ", ".join(f"{k}: {saved['settings'].get(k)!r} here, {s[k]!r} asked" for k in s
                              if saved["settings"].get(k) != s[k])  # fmt: skip
            sys.exit(f"{folder} holds a start model of other settings ({other}): pass another --out, or the same "
                     "settings.")  # fmt: skip
        log(f"reusing the start model in {folder} ({saved['steps']} steps, held-out accuracy "
            f"{saved['held_out']['accuracy']:.1%} on {saved['held_out']['n']} problems)")  # fmt: skip
        return NanoGPT.load(folder), WordTokenizer(vocab_file=folder / "tokenizer.json"), saved
    log(f"pretraining the start model into {folder} (validation every {s['eval_every']} steps, stop at "
        f"{s['stop_at']:.0%})")  # fmt: skip
    model, tokenizer, info = pretrain(s, log)
    _, _, held_out = problems(s)
    t0 = time.perf_counter()
    held = spread(greedy_rewards(model, tokenizer, held_out, s["max_new_tokens"]))
    task = {"name": "word_problems", "difficulty": s["difficulty"], "style": "plain", "chat": False,
            "seed": s["task_seed"], "n_test_at_most": s["n_test"]}  # fmt: skip
    record = {"settings": s, **info, "held_out": held, "eval_seconds": round(time.perf_counter() - t0, 1),
              "task": task, "threads": torch.get_num_threads()}  # fmt: skip
    partial = out / (START + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save(partial)
    tokenizer.save(partial / "tokenizer.json")
    (partial / "start.json").write_text(json.dumps(record, indent=1) + "\n")
    os.replace(partial, folder)  # whole or not at all
    return model, tokenizer, record


# ---------------------------------------------------------------------------------------------------- costs
def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def sampled_groups(model, tokenizer, records, s: dict, args) -> torch.Tensor:
    """``[P, G]`` rewards of ``G`` keyed samples at temperature 1 of each of the ``P`` problems."""
    rows = [r for r in records for _ in range(args.group)]
    ids, mask = encode_prompts(tokenizer, [r["prompt"] for r in rows])
    keys = mix(args.seed, 1, torch.arange(len(rows)))
    out = sample(model, ids, mask, [tokenizer.eos_token_id], tokenizer.pad_token_id, s["max_new_tokens"], keys=keys)
    texts = tokenizer.batch_decode(out.ids, skip_special_tokens=True)
    rewards = numeric_answer_reward(None, texts, [r["answer"] for r in rows], use_math_verify=False)
    return torch.tensor(rewards).reshape(len(records), args.group)


def measure_costs(model, tokenizer, s: dict, record: dict, args) -> None:
    """Time the pieces of an RL step on the start model, print the table, the estimate and the ratios."""
    test = problems(s)[2]
    prompts = test[: args.prompts]
    rows = [r for r in prompts for _ in range(args.group)]
    ids, mask = encode_prompts(tokenizer, [r["prompt"] for r in rows])
    keys = mix(args.seed, 0, torch.arange(len(rows)))
    rollout = dict(eos_ids=[tokenizer.eos_token_id], pad_id=tokenizer.pad_token_id,
                   max_new_tokens=s["max_new_tokens"], temperature=1.0, keys=keys)  # fmt: skip
    cached, batch = timed(lambda: sample_batch(model, ids, mask, **rollout), args.repeats)
    uncached, again = timed(lambda: decode(model, ids, mask, **rollout, use_cache=False), args.repeats)
    assert torch.equal(again.ids, batch.completion_ids)  # the same completions either way
    rhythm = RhythmSettings(horizon=tuple(args.horizon))
    with torch.no_grad():
        old_pass, _ = timed(lambda: measure(model, batch, rhythm=rhythm), args.repeats)

    def update():
        model.zero_grad(set_to_none=True)
        logp = measure(model.train(), batch).logp
        (-(logp * batch.completion_mask).sum() / batch.completion_mask.sum()).backward()
        model.eval()

    fwd_bwd, _ = timed(update, args.repeats)
    texts = tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
    answers = [r["answer"] for r in rows]
    reward_s, _ = timed(lambda: numeric_answer_reward(None, texts, answers, use_math_verify=False), args.repeats)
    numeric_answer_reward(None, texts, answers)  # math-verify's worker process starts at its first call
    verify_s, _ = timed(lambda: numeric_answer_reward(None, texts, answers), args.repeats)
    eval_s, _ = timed(lambda: greedy_rewards(model, tokenizer, test, s["max_new_tokens"]), 1)
    groups = sampled_groups(model, tokenizer, test[: args.spread_prompts], s, args)
    mixed = ((groups > 0).any(1) & (groups == 0).any(1)).float().mean().item()
    per_prompt = groups.mean(1)
    length = batch.completion_mask.sum(1).float().mean().item()
    step = cached + old_pass + fwd_bwd + reward_s
    held = record["held_out"]
    print(f"\nstart model: {record['parameters'] / 1e6:.2f}M parameters ({s['n_layer']} layers x {s['n_head']} heads, "
          f"width {s['n_embd']}), {record['steps']} pretraining steps; held-out greedy accuracy "
          f"{held['accuracy']:.1%} +- {held['se']:.1%} (SE; 95% CI {held['ci95'][0]:.1%} to {held['ci95'][1]:.1%}, "
          f"n = {held['n']})")  # fmt: skip
    print(f"sampled at temperature 1, {len(per_prompt)} held-out prompts x {args.group}: accuracy "
          f"{per_prompt.mean():.1%}, per-prompt accuracy sd {per_prompt.std():.2f} (min {per_prompt.min():.2f}, "
          f"max {per_prompt.max():.2f}); groups with a GRPO signal (right and wrong answers) {mixed:.0%}")  # fmt: skip
    print(f"rollout: {args.prompts} prompts x {args.group} completions, temperature 1, {length:.1f} tokens each on "
          f"average; {torch.get_num_threads()} thread(s), median of {args.repeats}")  # fmt: skip
    print("\n| piece                                      |  seconds |")
    print("|--------------------------------------------|----------|")
    table = [("rollout, KV cache", cached), ("rollout, prefix recomputed", uncached),
             ("old log-probs + rhythm (no grad)", old_pass), ("forward + backward (update)", fwd_bwd),
             ("reward (numeric, no math-verify)", reward_s), ("reward (numeric, math-verify if installed)", verify_s),
             (f"greedy evaluation of {len(test)} problems", eval_s)]  # fmt: skip
    for name, seconds in table:
        print(f"| {name:<42} | {seconds:8.3f} |")
    print(f"\nRL step estimate (rollout with cache + old pass + update + reward): {step:.2f} s, "
          f"{3600 / step:.0f} steps/hour per process at this load")  # fmt: skip
    print(f"ratios: rollout prefix recomputed / KV cache {uncached / cached:.2f}x; rollout / step {cached / step:.2f}; "
          f"update / step {fwd_bwd / step:.2f}; evaluation / step {eval_s / step:.1f}")  # fmt: skip


# ------------------------------------------------------------------------------------------------------- run
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("credit_from_scratch"))
    parser.add_argument("--seed", type=int, default=0, help="pretraining: initial weights and data order")
    parser.add_argument("--task-seed", type=int, default=0, help="the RL task's seed (task.seed)")
    parser.add_argument("--difficulty", type=int, default=3, help="word problems' difficulty (task.difficulty)")
    parser.add_argument("--n-test", type=int, default=1000, help="test problems excluded (task.n_test at most)")
    parser.add_argument("--n-eval", type=int, default=500, help="held-out problems the start accuracy is taken on")
    parser.add_argument("--n-val", type=int, default=200, help="validation problems of the stopping rule")
    parser.add_argument("--n-pretrain", type=int, default=40000, help="pretraining problems")
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-steps", type=int, default=3000, help="the schedule's length, and the last step")
    parser.add_argument("--eval-every", type=int, default=100, help="validation (greedy) every this many steps")
    parser.add_argument("--stop-at", type=float, default=0.35, help="stop when the validation accuracy reaches this")
    parser.add_argument("--accept", type=float, nargs=2, default=(0.2, 0.6), help="held-out accuracy range")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="completion budget of the rollouts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--measure", action="store_true", help="time the pieces of an RL step on the start model")
    parser.add_argument("--prompts", type=int, default=8, help="--measure: prompts per step")
    parser.add_argument("--group", type=int, default=8, help="--measure: completions per prompt")
    parser.add_argument("--repeats", type=int, default=5, help="--measure: timed repeats (the median is shown)")
    parser.add_argument("--spread-prompts", type=int, default=64, help="--measure: prompts of the sampled accuracy")
    parser.add_argument("--horizon", type=int, nargs=2, default=(4, 32), help="the rhythm's FAI horizon")
    rl = parser.add_argument_group("the RL table (phase 2) and its report (phase 3)")
    rl.add_argument("--rl", action="store_true", help="run the table's unfinished cells, then report")
    rl.add_argument("--report", action="store_true", help="report the finished cells (no run)")
    rl.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    rl.add_argument("--seeds", type=int, default=8, help="cells of each strategy: seeds 0 .. N - 1")
    rl.add_argument("--workers", type=int, default=2, help="cells run at once (one process, one thread each)")
    defaults = RLSettings()
    for name in ("steps", "prompts", "group", "lr", "eval_every", "n_eval", "n_train", "beta"):
        rl.add_argument(f"--rl-{name.replace('_', '-')}", type=type(getattr(defaults, name)),
                        default=getattr(defaults, name), help=f"RL: {name}")  # fmt: skip
    rl.add_argument("--rl-layers", default=defaults.layers, help="RL: the rhythm's layers ('middle', 'all')")
    rl.add_argument("--survey", type=int, default=0, help="report: the coupling statistics on this many prompts")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {name: getattr(args, name) for name in SETTINGS}
    model, tokenizer, record = start_model(settings, args.out)
    held = record["held_out"]
    low, high = args.accept
    print(f"start model: {args.out / START}; held-out greedy accuracy {held['accuracy']:.1%} on {held['n']} problems "
          f"(95% CI {held['ci95'][0]:.1%} to {held['ci95'][1]:.1%}), after {record['steps']} steps; RL task: "
          f"{json.dumps(record['task'])}")  # fmt: skip
    if args.measure:
        measure_costs(model, tokenizer, settings, record, args)
    if not low <= held["accuracy"] <= high:
        sys.exit(f"the start model's held-out accuracy {held['accuracy']:.1%} is outside --accept {low} {high}: "
                 f"change --stop-at ({args.stop_at}) and --out")  # fmt: skip
    if args.rl or args.report:
        rl_phase(args, model, tokenizer, record)


def rl_phase(args, model, tokenizer, record: dict) -> None:
    """Phase 2 (unless ``--report``): the table's unfinished cells; phase 3: the report of the finished ones."""
    rl = RLSettings(**{name: getattr(args, f"rl_{name}") for name in
                       ("steps", "prompts", "group", "lr", "eval_every", "n_eval", "n_train", "beta", "layers")},
                    max_new_tokens=args.max_new_tokens, horizon=tuple(args.horizon))  # fmt: skip
    if rl.n_eval > record["settings"]["n_test"]:
        held_out = record["settings"]["n_test"]
        sys.exit(f"--rl-n-eval {rl.n_eval} is more than the start model's held-out problems ({held_out})")
    task = {k: v for k, v in record["task"].items() if k != "n_test_at_most"}
    start = args.out / START
    seeds = range(args.seeds)
    start_accuracy = record["held_out"]["accuracy"]
    if rl.n_eval != record["held_out"]["n"]:  # the start model on the RL runs' held-out problems
        held_out = task_test_split(record["settings"])[: rl.n_eval]
        start_accuracy = statistics.fmean(greedy_rewards(model, tokenizer, held_out, args.max_new_tokens))
    if args.rl:
        run_table(start, args.out, args.strategies, seeds, rl, task, args.workers)
    summary = summarize(args.out, {"held_out": {"accuracy": start_accuracy}}, args.strategies, seeds,
                        extra={"settings": asdict(rl), "task": task, "start_model": record["settings"]})  # fmt: skip
    if args.survey:  # the rhythm's coupling before and after RL
        records = task_test_split(record["settings"])[: args.survey]
        rhythm = RhythmSettings(horizon=tuple(args.horizon), layers=rl.layers)
        chosen = [s for s in ("uniform", "coupled") if s in args.strategies]
        summary["survey"] = survey_runs(args.out, model, tokenizer, records, rhythm, args.max_new_tokens, chosen, seeds)
    folder = args.out / "report"
    write(summary, folder)
    print("\n" + table(summary))
    if summary["curves"]:
        title = (f"RL from the start model ({record['parameters'] / 1e6:.2f}M NanoGPT, held-out {start_accuracy:.1%}): "
                 f"{rl.steps} steps of {rl.prompts} x {rl.group}, lr {rl.lr:g}")  # fmt: skip
        print(f"wrote {plot(summary, folder / 'curves.png', title)}, {folder / 'summary.json'}, {folder / 'table.md'}")


if __name__ == "__main__":
    main()
