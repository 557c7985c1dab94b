"""Activation memory of one GRPO update forward/backward on a bf16-compute 4-bit LoRA model, by preparation
and by how the log-probabilities are computed.

Usage::

    python benchmarks/bench_update_memory.py                      # Qwen3-0.6B shape, 8 x (40 + 64) tokens, CPU
    python benchmarks/bench_update_memory.py --layers 4           # quicker, the same per-layer picture
    python benchmarks/bench_update_memory.py --layers 1 --batch 1 --prompt 4 --completion 4 --model-vocab 128  # smoke

A CPU stand-in for a GPU's ``max_memory_allocated``, and deterministic: the bytes of the distinct tensors that
autograd saves for the backward (``torch.autograd.graph.saved_tensors_hooks``, weights and buffers left out),
for the same random model, tokens and loss (the completion's log-probabilities), under a bf16 autocast (as
Lightning's ``bf16-mixed`` and TRL's ``bf16=True`` run it), four ways:

* ``before``:        peft's ``prepare_model_for_kbit_training`` + float32 LoRA, log-probabilities from the full
  logits (RhythmGRPO until this benchmark): norms, embeddings and head become float32, and with them the
  residual stream and the ``[B, T, vocab]`` logits;
* ``lean-prep``:     :func:`lightning_reasonattn.models.add_lora` (everything but the float32 LoRA factors stays
  bfloat16), still through the full logits;
* ``reasonattn``:    the same with the fused head (``chunked_logprobs``: no ``[B, T, vocab]`` tensor kept),
  what RhythmGRPO does now;
* ``trl-like``:      the same with the LoRA factors cast to bfloat16, as TRL's GRPOTrainer does for quantized
  models (TRL also has a fused head).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=28, help="decoder layers of the Qwen3-0.6B shape")
    parser.add_argument("--batch", type=int, default=8, help="completions in the update batch")
    parser.add_argument("--prompt", type=int, default=40, help="prompt tokens")
    parser.add_argument("--completion", type=int, default=64, help="completion tokens")
    parser.add_argument("--model-vocab", type=int, default=None, help="vocabulary (default: Qwen3's, 151936)")
    return parser.parse_args()


def saved_bytes(model, ids: torch.Tensor, width: int, fused: bool) -> int:
    """Bytes of the distinct non-weight tensors saved for backward in one update forward."""
    from lightning_reasonattn.models import lean_lora_casts
    from lightning_reasonattn.rollout.logprobs import (
        completion_logits,
        completion_logprobs_entropy,
        selective_log_softmax,
    )

    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weights |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    mask = torch.ones_like(ids)
    saving = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    # lean_lora_casts: peft's 4-bit LoRA layers skip their float32 input cast under CUDA autocast only; this makes
    # the CPU run do what a GPU run does (and what RhythmGRPO's training step does on either).
    with torch.autocast("cpu", dtype=torch.bfloat16), lean_lora_casts(model), saving:
        if fused:
            logp, _ = completion_logprobs_entropy(model, ids, mask, width)
        else:
            logp = selective_log_softmax(completion_logits(model, ids, mask, width), ids[:, -width:])
    (-logp.mean()).backward()
    return sum(seen.values())


def build(folder: Path, layers: int, vocab: int | None = None):
    from bench_grpo import model_config
    from transformers import AutoModelForCausalLM

    from lightning_reasonattn.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer(vocab_size=97)
    shape = argparse.Namespace(shape="qwen3-0.6b", model_vocab=vocab)
    config = model_config(shape, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    config.num_hidden_layers = layers
    config.layer_types = config.layer_types[:layers]
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return config


def prepared(folder: Path, how: str):
    import peft

    from lightning_reasonattn.models import LORA_TARGETS, LoraSettings, add_lora, load_model

    base, _ = load_model(str(folder), dtype="bfloat16", device="cpu", quantization="nf4", double_quant=True)
    settings = LoraSettings(r=16, alpha=32)
    if how == "before":
        base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        targets = LORA_TARGETS["qwen3"]  # the same modules add_lora picks for this family
        model = peft.get_peft_model(base, peft.LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    else:
        model = add_lora(base, settings)
        if how == "trl-like":
            for param in model.parameters():
                if param.requires_grad:
                    param.data = param.data.to(torch.bfloat16)
    return model.train()


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-update-memory-") as tmp:
        folder = Path(tmp) / "model"
        config = build(folder, args.layers, args.model_vocab)
        ids = torch.randint(0, config.vocab_size, (args.batch, args.prompt + args.completion))
        print(
            f"random Qwen3-0.6B shape with {args.layers} layers (vocab {config.vocab_size}), NF4 + LoRA r=16 on "
            f"every projection, bf16 compute, CPU; one update forward/backward over {args.batch} x "
            f"({args.prompt} + {args.completion}) tokens",
            flush=True,
        )
        for how in ("before", "lean-prep", "reasonattn", "trl-like"):
            model = prepared(folder, how)
            adapter = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
            rows[how] = (saved_bytes(model, ids, args.completion, fused=how in ("reasonattn", "trl-like")), adapter)
            del model
    print()
    print(f"{'route':<11} | {'saved for backward MiB':>22} | {'adapter MiB':>11}")
    print("-" * 51)
    for how, (nbytes, adapter) in rows.items():
        print(f"{how:<11} | {nbytes / 2**20:>22.1f} | {adapter / 2**20:>11.1f}")
    print()
    print("ratios")
    print(f"  reasonattn / before:   {rows['reasonattn'][0] / rows['before'][0]:6.2f}x")
    print(f"  reasonattn / trl-like: {rows['reasonattn'][0] / rows['trl-like'][0]:6.2f}x")


if __name__ == "__main__":
    main()
