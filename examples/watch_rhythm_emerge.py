"""Watch the rhythm emerge: a small GPT trained from scratch on CPU, with AttentionRhythmMonitor logging WAAD, FAI
and the coupling lift as it learns.

    python examples/watch_rhythm_emerge.py    # the run of docs/emerge.md: 20 min of CPU time (40 min wall on a
                                              # shared 2-core machine)
    python examples/watch_rhythm_emerge.py --max-steps 3 --n-layer 2 --n-embd 32   # a smoke run, seconds

The text is built-in word problems (``lightning_reasonattn.tasks.generate_word_problems``: a count that changes
over 4 steps) written out as next-token prediction, with a worked answer::

    Question: Ben has 3 marbles. Then he gives 2 away. Then he loses 1. ... How many marbles does Ben have now?
    Answer: 3 - 2 = 1. 1 - 1 = 0. 0 + 2 = 2. 2 + 6 = 8. The answer is 8.

Tokens are words, punctuation and single digits (``lightning_reasonattn.WordTokenizer``, built from the data). The
model is ``lightning_reasonattn.NanoGPT``, nanoGPT-style: learned positions, pre-norm blocks, attention through
``F.scaled_dot_product_attention(is_causal=True)``; the
monitor finds its blocks and captures the rhythm from those calls (the SDPA route). The loss covers every token;
the rhythm is measured over the answer (``response_mask``). Validation every ``--val-every`` steps logs the loss,
the share of answers right under teacher forcing, and (``HeadDistances``) the mean backward distance of every head.

Written into ``--out``: ``metrics.csv`` (every logged value), ``heads.json``, ``curves.png`` and ``summary.json``
(the run's settings, wall time and last values).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from lightning_reasonattn import AttentionRhythmMonitor, BatchKeys, NanoGPT, WordTokenizer, capture_rhythm
from lightning_reasonattn.arguments import non_negative_int, positive_int, random_seed
from lightning_reasonattn.tasks import generate_word_problems, worked_answer


# ----------------------------------------------------------------------------------------------------- data
def texts(n: int, seed: int) -> list[tuple[str, str]]:
    """``(prompt, answer)`` pairs of ``n`` word problems with 4 changes of at most 9."""
    records = generate_word_problems(n, seed=seed, difficulty=3, steps=4)
    return [(r["prompt"], " " + worked_answer(r["expression"])) for r in records]


def examples(pairs, tokenizer: WordTokenizer) -> list[dict[str, torch.Tensor]]:
    """One dict per problem: ``input_ids``, ``response_mask`` (the answer and its end token)."""
    out = []
    for prompt, answer in pairs:
        p, a = tokenizer.encode(prompt), tokenizer.encode(answer) + [tokenizer.eos_token_id]
        response = torch.tensor([False] * len(p) + [True] * len(a))
        out.append({"input_ids": torch.tensor(p + a), "response_mask": response})
    return out


def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right padding: a causal model never lets a real token attend to padding that comes after it."""
    n = max(len(r["input_ids"]) for r in rows)
    batch = {
        "input_ids": torch.zeros(len(rows), n, dtype=torch.long),
        "attention_mask": torch.zeros(len(rows), n, dtype=torch.long),
        "response_mask": torch.zeros(len(rows), n, dtype=torch.bool),
    }
    for i, r in enumerate(rows):
        m = len(r["input_ids"])
        batch["input_ids"][i, :m] = r["input_ids"]
        batch["attention_mask"][i, :m] = 1
        batch["response_mask"][i, :m] = r["response_mask"]
    return batch


# ---------------------------------------------------------------------------------------------------- model
class WordProblemGPT(pl.LightningModule):
    """Next-token prediction over the whole text; validation also scores the answers under teacher forcing."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int, lr: float, steps: int):
        super().__init__()
        self.save_hyperparameters()
        self.model = NanoGPT(vocab_size, block_size, n_layer, n_head, n_embd)

    def losses(self, batch):
        logits = self.model(batch["input_ids"])[:, :-1]
        target = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100)
        return loss, logits, target

    def training_step(self, batch, batch_idx):
        loss, _, _ = self.losses(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logits, target = self.losses(batch)
        answer = batch["response_mask"][:, 1:]
        right = (logits.argmax(-1) == target) | ~answer
        self.log("val_loss", loss)
        self.log("val_answer_token_acc", (right & answer).sum() / answer.sum())
        self.log("val_answer_exact", right.all(-1).float().mean())  # every answer token right (teacher forcing)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.1, betas=(0.9, 0.95))
        warmup, total = max(1, self.hparams.steps // 20), self.hparams.steps

        def schedule(step):  # linear warm-up, then cosine down to a tenth
            if step < warmup:
                return (step + 1) / warmup
            return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# ------------------------------------------------------------------------------------------ head distances
class HeadDistances(pl.Callback):
    """After each validation, the mean backward distance of every head of every layer on a fixed probe batch
    (``trace.head_distance``), and of the local and global groups the capture picks from them."""

    def __init__(self, probe: dict[str, torch.Tensor], horizon: tuple[int, int]):
        self.probe, self.horizon = probe, horizon
        self.history: list[dict] = []

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        batch = {k: v.to(pl_module.device) for k, v in self.probe.items()}
        ids, mask, response = batch["input_ids"], batch["attention_mask"], batch["response_mask"]
        trace = capture_rhythm(model, ids, mask, response, layers="all", horizon=self.horizon)
        model.train(was_training)
        per_head = trace.head_distance.mean(0)  # [L, H]
        flat = trace.head_distance.flatten(1)  # [B, L * H]
        local = flat.gather(1, trace.local_heads).mean().item()
        glob = flat.gather(1, trace.global_heads).mean().item()
        step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the step Lightning and the monitor log at
        self.history.append({"step": step, "per_head": per_head.tolist(), "local": local, "global": glob})
        for logger in trainer.loggers:
            logger.log_metrics({"heads/local_distance": local, "heads/global_distance": glob}, step=step)


# ---------------------------------------------------------------------------------------------- the figure
def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    import csv

    series: dict[str, list[tuple[int, float]]] = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            for name, value in row.items():
                if name != "step" and value not in ("", None):
                    series.setdefault(name, []).append((int(row["step"]), float(value)))
    return series


def plot(out: Path, series: dict, heads: list[dict], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def line(ax, name, label, **kw):
        if name in series:
            x, y = zip(*series[name], strict=True)
            ax.plot(x, y, label=label, **kw)

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    ax = axes[0, 0]
    line(ax, "val_loss", "validation loss", color="k")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    line(twin, "val_answer_exact", "answers right (teacher forcing)", color="tab:green")
    line(twin, "val_answer_token_acc", "answer tokens right", color="tab:green", ls="--")
    twin.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    ax.set_title("learning")

    ax = axes[0, 1]
    line(ax, "rhythm/val/waad", "WAAD (local heads)", color="tab:blue")
    ax.set_ylabel("WAAD (tokens)")
    twin = ax.twinx()
    line(twin, "rhythm/val/fai", "FAI (global heads)", color="tab:orange")
    twin.set_ylabel("FAI")
    ax.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    ax.set_title("WAAD and FAI over the answers (validation)")

    ax = axes[1, 0]
    line(ax, "rhythm/val/fai_preceded_lift", "FAI peak preceded by a WAAD peak", color="tab:purple")
    line(ax, "rhythm/val/waad_followed_lift", "WAAD peak followed by an FAI peak", color="tab:red")
    line(ax, "rhythm/val/entropy_lift", "entropy at WAAD peaks / mean", color="tab:gray", ls="--")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("lift over shuffled positions")
    ax.legend(fontsize=8)
    ax.set_title("coupling (1 = no coupling)")

    ax = axes[1, 1]
    if heads:
        steps = [h["step"] for h in heads]
        per_head = torch.tensor([h["per_head"] for h in heads])  # [T, L, H]
        layers = per_head.shape[1]
        colors = plt.cm.viridis(torch.linspace(0, 0.9, layers).tolist())
        for layer in range(layers):
            for head in range(per_head.shape[2]):
                ax.plot(steps, per_head[:, layer, head], color=colors[layer], lw=0.7, alpha=0.8,
                        label=f"layer {layer}" if head == 0 else None)  # fmt: skip
        ax.plot(steps, [h["local"] for h in heads], "k--", lw=2, label="local group (30%)")
        ax.plot(steps, [h["global"] for h in heads], "k-", lw=2, label="global group (30%)")
        ax.legend(fontsize=7, ncol=2)
    ax.set_ylabel("mean backward distance (tokens)")
    ax.set_title("every head's reach")
    for ax in axes.flat:
        ax.set_xlabel("optimizer step")
    fig.suptitle(title, fontsize=10)
    path = out / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------------- run
def learning_rate(text: str) -> float:
    """A learning rate: a finite number > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a learning rate: pass a number > 0, e.g. 2e-3")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The script's arguments, each checked (a zero count, a width the heads do not divide: named, with the fix)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("rhythm_emerge"))
    parser.add_argument("--max-steps", type=positive_int, default=600)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--n-layer", type=positive_int, default=6)
    parser.add_argument("--n-head", type=positive_int, default=6)
    parser.add_argument("--n-embd", type=positive_int, default=192, help="width: a multiple of --n-head")
    parser.add_argument("--lr", type=learning_rate, default=2e-3)
    parser.add_argument("--n-train", type=positive_int, default=20000)
    parser.add_argument("--n-val", type=positive_int, default=96)
    parser.add_argument(
        "--val-every", type=positive_int, default=40, help="validate (and measure) every this many steps"
    )
    parser.add_argument(
        "--horizon", type=non_negative_int, nargs=2, default=(4, 32), help="FAI horizon: answers are ~35 tokens"
    )
    parser.add_argument("--seed", type=random_seed, default=0)
    parser.add_argument("--threads", type=non_negative_int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.n_embd % args.n_head:
        low = args.n_embd - args.n_embd % args.n_head
        parser.error(
            f"argument --n-embd: {args.n_embd} is not a multiple of --n-head {args.n_head} (each head takes an equal "
            f"share of the width): pass e.g. --n-embd {low or args.n_head} or {low + args.n_head}"
        )
    if args.horizon[0] > args.horizon[1]:
        parser.error(f"argument --horizon: {args.horizon[0]} {args.horizon[1]}: pass LO HI with LO <= HI, e.g. 4 32")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pl.seed_everything(args.seed, verbose=False)
    args.out.mkdir(parents=True, exist_ok=True)

    train_pairs, val_pairs = texts(args.n_train, args.seed), texts(args.n_val, args.seed + 1)
    tokenizer = WordTokenizer.from_corpus([p + a for p, a in train_pairs + val_pairs])
    train, val = examples(train_pairs, tokenizer), examples(val_pairs, tokenizer)
    block_size = max(len(r["input_ids"]) for r in train + val)
    shape = (args.n_layer, args.n_head, args.n_embd)
    module = WordProblemGPT(len(tokenizer.vocab), block_size, *shape, args.lr, args.max_steps)
    params = sum(p.numel() for p in module.parameters())
    horizon = tuple(args.horizon)

    monitor = AttentionRhythmMonitor(
        every_n_steps=args.val_every, inputs=BatchKeys(response_mask="response_mask"), horizon=horizon
    )
    heads = HeadDistances(collate(val[: args.batch_size]), horizon)
    train_loader = DataLoader(train, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    val_loader = DataLoader(val, batch_size=args.batch_size, collate_fn=collate)
    trainer = pl.Trainer(
        max_steps=args.max_steps,
        accelerator="cpu",
        logger=CSVLogger(args.out, name="", version=""),
        callbacks=[monitor, heads],
        val_check_interval=args.val_every,
        check_val_every_n_epoch=None,
        log_every_n_steps=min(10, len(train_loader)),  # (a tiny smoke run has fewer batches an epoch)
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.validate(module, val_loader, verbose=False)  # step 0
    trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - start

    (args.out / "heads.json").write_text(json.dumps(heads.history))
    series = read_metrics(args.out / "metrics.csv")
    title = (
        f"GPT {params / 1e6:.1f}M parameters ({args.n_layer} layers x {args.n_head} heads, width {args.n_embd}), "
        f"word problems, {args.max_steps} steps of {args.batch_size}; {seconds / 60:.1f} min on "
        f"{torch.get_num_threads()} CPU threads"
    )
    figure = plot(args.out, series, heads.history, title)
    last = {name: values[-1][1] for name, values in series.items() if name.startswith(("val_", "rhythm/val/"))}
    summary = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
               "parameters": params, "wall_seconds": round(seconds, 1), "last": last}  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{title}\nwrote {figure}")
    for name in ("val_loss", "val_answer_exact", "rhythm/val/waad", "rhythm/val/fai", "rhythm/val/fai_preceded_lift"):
        if name in last:
            print(f"  {name}: {last[name]:.4f}")
    return summary


if __name__ == "__main__":
    main()
