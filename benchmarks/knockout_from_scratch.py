"""Are anchors causal in a model trained from scratch? The survey's knockout test on the GPT of
``examples/watch_rhythm_emerge.py``.

Usage::

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/knockout_from_scratch.py --out knock_gpt  # 25 min, 1 thread
    python benchmarks/knockout_from_scratch.py --out smoke --max-steps 2 --n-layer 2 --n-head 2 --n-embd 32 \\
        --n-train 64 --n-test 8 --boot 50                                                         # a smoke run

Trains the example's GPT (``NanoGPT``, 2.7M parameters, word tokens, learned positions, SDPA attention) on its word
problems for ``--max-steps`` steps (1200 by default: 84% of 256 held-out answers right), or loads ``OUT/model.pt``
written by an earlier run with the same settings. Then, for ``--n-test`` held-out problems, the worked answer is the
response (teacher forcing): its rhythm is captured over the answer (``capture_rhythm``, the example's horizon
``(4, 32)``), its token entropies come from the same forward, and each response's groups are chosen and knocked out
with the same functions as ``reasonattn survey --knockout`` (``lightning_reasonattn.functional.knockout``,
``lightning_reasonattn.survey.knockout``): anchors (top FAI peaks), random, position-matched, same-kind,
highest-entropy and preplan tokens, and anchors / random tokens in the global heads only. The final answer is found
as the survey finds it (the last number: the one after "The answer is").

Writes ``OUT/knockout.json`` (the groups with their intervals, the settings, the accuracy, times) and
``OUT/knockout.png``; prints the table, then the anchors' ratios last.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from lightning_reasonattn import capture_rhythm
from lightning_reasonattn.functional import token_entropy
from lightning_reasonattn.functional.knockout import choose_groups, token_kind
from lightning_reasonattn.functional.settings import PEAK_TOP
from lightning_reasonattn.survey.knockout import (
    answer_tokens,
    final_answer_span,
    heads_rows,
    measure_response,
    summarize_knockout,
    token_texts,
)
from lightning_reasonattn.survey.page import format_knockout_table, knockout_figure

ROOT = Path(__file__).resolve().parent.parent
TRAINING = {"max_steps": 1200, "batch_size": 16, "n_layer": 6, "n_head": 6, "n_embd": 192, "lr": 2e-3, "n_train": 20000}


def example():
    """``examples/watch_rhythm_emerge.py`` as a module (its data, tokenizer and model)."""
    spec = importlib.util.spec_from_file_location("watch_rhythm_emerge", ROOT / "examples" / "watch_rhythm_emerge.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("knockout_from_scratch"))
    for name, default in TRAINING.items():  # the example's settings, but 1200 steps
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--n-test", type=int, default=256, help="held-out problems knocked out (default 256)")
    parser.add_argument("--count", type=int, default=4, help="tokens knocked out per group and answer (default 4)")
    parser.add_argument("--horizon", type=int, nargs=2, default=(4, 32), help="FAI horizon (the example's)")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def train_or_load(ex, args, tokenizer, train) -> tuple[torch.nn.Module, dict]:
    """The trained GPT: from ``OUT/model.pt`` when it was trained with these settings, else trained now."""
    settings = {**{k: getattr(args, k) for k in TRAINING}, "seed": args.seed, "vocab": tokenizer.vocab}
    block_size = max(len(r["input_ids"]) for r in train)
    module = ex.WordProblemGPT(len(tokenizer.vocab), block_size, args.n_layer, args.n_head, args.n_embd, args.lr,
                               args.max_steps)  # fmt: skip
    path = args.out / "model.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        if saved["settings"] == settings:
            module.model.load_state_dict(saved["state_dict"])
            return module.model.eval(), {"train_s": saved["train_s"], "loaded": True}
    pl.seed_everything(args.seed, verbose=False)
    loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=ex.collate)
    trainer = pl.Trainer(max_steps=args.max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, loader)
    seconds = round(time.perf_counter() - start, 1)
    torch.save({"settings": settings, "state_dict": module.model.state_dict(), "train_s": seconds}, path)
    return module.model.eval(), {"train_s": seconds, "loaded": False}


def knock_out_batch(ex, model, batch, tokenizer, args, first_index: int) -> tuple[list[dict], int]:
    """Records of one batch of held-out answers (as the survey's), and how many answers the model gets right."""
    ids, am, response = batch["input_ids"], batch["attention_mask"], batch["response_mask"]
    trace, logits = capture_rhythm(model, ids, am, response, horizon=tuple(args.horizon), return_outputs=True)
    entropy = token_entropy(logits)
    right = ((logits[:, :-1].argmax(-1) == ids[:, 1:]) | ~response[:, 1:]).all(-1)
    records = []
    for row in range(ids.shape[0]):
        where = response[row].nonzero().flatten()
        p, n = int(where[0]), int(where[-1]) + 1
        texts = token_texts(tokenizer.decode, ids[row, p:n].tolist())
        index = first_index + row
        out = {"prompt_index": index, "skipped": None}
        chosen = choose_groups(
            trace.fai[row, p:n], trace.waad[row, p:n], entropy[row, p:n], [token_kind(t) for t in texts],
            args.count, top=PEAK_TOP, generator=torch.Generator().manual_seed(args.seed * 1_000_003 + index),
        )  # fmt: skip
        if chosen is None:
            records.append({**out, "skipped": "too few tokens with an FAI"})
            continue
        groups, unmatched = chosen
        heads = heads_rows(trace.global_heads[row].tolist(), trace.layers, args.n_layer, args.n_head)
        answer = answer_tokens(texts, final_answer_span("".join(texts)))  # the number after "The answer is"
        measured = measure_response(model, ids[row, :p].tolist(), ids[row, p:n].tolist(), groups, answer, heads)
        records.append({**out, "unmatched_kind": unmatched, "answer_tokens": int(answer.sum()), "groups": measured})
    return records, int(right.sum())


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ex = example()
    train_pairs, test_pairs = ex.texts(args.n_train, args.seed), ex.texts(args.n_test, args.seed + 1)
    tokenizer = ex.WordTokenizer.from_corpus([p + a for p, a in train_pairs + test_pairs])
    train, test = ex.examples(train_pairs, tokenizer), ex.examples(test_pairs, tokenizer)
    model, facts = train_or_load(ex, args, tokenizer, train)
    params = sum(p.numel() for p in model.parameters())

    start = time.perf_counter()
    records, right = [], 0
    with torch.no_grad():
        for first in range(0, len(test), args.batch_size):
            found, ok = knock_out_batch(ex, model, ex.collate(test[first : first + args.batch_size]), tokenizer, args,
                                        first)  # fmt: skip
            records += found
            right += ok
    facts["knockout_s"] = round(time.perf_counter() - start, 1)
    summary = summarize_knockout(records, n_boot=args.boot, level=0.95, seed=args.seed)
    result = {
        "model": f"GPT {params / 1e6:.1f}M ({args.n_layer} layers x {args.n_head} heads, width {args.n_embd}), "
        f"{args.max_steps} steps on word problems",
        "settings": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "level": 0.95},
        "answers_right": right / len(test),
        "run": {**facts, "threads": torch.get_num_threads()},
        "knockout": {"settings": {"count": args.count}, **summary},
    }
    (args.out / "knockout.json").write_text(json.dumps(result, indent=1))
    if summary["groups"]:
        figure = knockout_figure(result)
        figure.savefig(args.out / "knockout.png", dpi=90)
        print(format_knockout_table(result))
    done = f"{summary['responses']} answers knocked out ({summary['skipped']} skipped) in {facts['knockout_s']} s"
    print(f"\n{result['model']}: {right}/{len(test)} held-out answers right (teacher forcing); {done}")
    rows = {g["key"]: g for g in summary["groups"]}
    for key in ("random", "position", "same_kind", "entropy", "preplan", "random_global"):
        if key not in rows:
            continue
        for window in ("after", "answer"):
            stat = rows[key][window]["anchors_vs"]
            value, low, high = ("n/a" if stat[k] is None else f"{stat[k]:.3f}" for k in ("value", "low", "high"))
            anchors = "anchors_global" if key == "random_global" else "anchors"
            print(f"{anchors} / {key} ({window}): {value} [{low}, {high}]")
    return result


if __name__ == "__main__":
    main()
