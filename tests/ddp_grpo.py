"""RhythmGRPO runs for the multi-process tests: ``python tests/ddp_grpo.py OUT MODEL DEVICES``.

With ``DEVICES > 1`` the runs use Lightning's own ``strategy="ddp"`` on CPU processes (gloo): Lightning
re-runs this script once per extra rank, so every rank makes the same runs in the same order. The tests make
the same runs on one process by calling :func:`run` in-process, with the same settings.

Runs (each under ``OUT/<name>``: CSV logs, checkpoints after every step, completions.jsonl):

* ``uniform``: 2 steps, ``scale_rewards: group``;
* ``coupled``: 3 steps, a reward that returns None for some completions and logs a metric,
  ``scale_rewards: batch``, three mini-batches per step, held-out validation after step 2
  (5 problems: 3 and 2 per rank);
* ``resumed``: ``coupled`` again, resumed from its step-2 checkpoint;
* ``module`` (with a fourth argument, a folder of ``NanoGPT.save`` and ``tokenizer.json``): ``coupled``'s settings
  on a plain PyTorch module, every weight trained, on the word problems.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

SEED = 3


def module_kwargs(model: str, strategy: str) -> dict:
    from lightning_reasonattn.grpo.settings import (
        CreditSettings,
        LossSettings,
        OptimSettings,
        RewardSettings,
        SamplingSettings,
        TaskSettings,
    )
    from lightning_reasonattn.models import LoraSettings

    if model.startswith("nanogpt:"):  # a plain module: all its weights, a word problem task its tokenizer covers
        from lightning_reasonattn import NanoGPT, WordTokenizer

        folder = Path(model.removeprefix("nanogpt:"))
        task = TaskSettings(name="word_problems", difficulty=1, style="plain", chat=False, n_train=20, n_test=5)
        plain = dict(model=NanoGPT.load(folder), tokenizer=WordTokenizer(vocab_file=folder / "tokenizer.json"))
        return module_kwargs("unused", strategy) | plain | dict(quantization=None, lora=LoraSettings(), task=task)
    return dict(
        model=model,
        quantization="nf4",
        lora=LoraSettings(r=4, alpha=8),
        task=TaskSettings(name="countdown", n_train=20, n_test=5),
        # a value per text: equal iff same text; the coupled runs' reward does not apply to some completions
        # (None: NaN-aware sums and means over all ranks) and logs a value per completion with log_metric
        rewards=RewardSettings(functions=[f"conftest:{'partial' if strategy == 'coupled' else 'text'}_hash_reward"]),
        prompts_per_step=4,
        group_size=3,
        sampling=SamplingSettings(max_new_tokens=10, temperature=0.9, top_k=40),
        credit=CreditSettings(strategy=strategy, horizon=(2, 8), q=0.4),
        loss=LossSettings(
            scale_rewards="batch" if strategy == "coupled" else "group",
            mini_batch_size=2 if strategy == "coupled" else None,  # 6 rows per rank: 3 backward passes
        ),
        # AdamW normalises each element's update: a gradient element at fp32's noise floor (summed in another
        # order on 2 ranks) still moves by up to lr, so the 1e-5 comparison holds for lr 1e-3 (0.01 measured
        # 1.3e-5 at step 3); a real split or weighting error moves the adapter by O(lr), 100x the tolerance.
        optim=OptimSettings(lr=1e-3),
        log_completions_every_n_steps=1,
        eval_batch_size=2,
    )


def run(out: Path, model: str, devices: int, name: str, steps: int, strategy: str, ckpt_path: str | None = None):
    """One ``trainer.fit`` of RhythmGRPO (on ``devices`` CPU processes); its logs and checkpoints in ``out/name``."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lightning_reasonattn.grpo import RhythmGRPO

    pl.seed_everything(SEED, verbose=False)
    module = RhythmGRPO(**module_kwargs(model, strategy))
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=CSVLogger(out / name, name="", version=""),
        callbacks=[ModelCheckpoint(dirpath=out / name / "ckpt", every_n_train_steps=1, save_top_k=-1)],
        val_check_interval=2 if strategy == "coupled" else None,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, ckpt_path=ckpt_path)  # checkpoints are plain data: they load with weights_only=True
    return trainer


def main(out: Path, model: str, devices: int, module: str | None = None) -> None:
    run(out, model, devices, "uniform", 2, "uniform")
    run(out, model, devices, "coupled", 3, "coupled")
    run(out, model, devices, "resumed", 3, "coupled", ckpt_path=str(out / "coupled" / "ckpt" / "epoch=0-step=2.ckpt"))
    if module is not None:
        run(out, f"nanogpt:{module}", devices, "module", 3, "coupled")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[-1]), sys.argv[3] if len(sys.argv) > 4 else None)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        (Path(sys.argv[1]) / "done").write_text("ok")
