"""RhythmGRPO vs TRL's GRPOTrainer: rollout and update throughput, step time and peak memory, side by side.

Usage::

    python benchmarks/bench_grpo.py                          # tiny random Llama, CPU, 1 thread: ~2-3 min
    python benchmarks/bench_grpo.py --steps 2 --warmup 1     # quicker
    python benchmarks/bench_grpo.py --threads 2              # on an idle machine with 2 free cores
    python benchmarks/bench_grpo.py --routes uniform trl     # a subset of the routes
    python benchmarks/bench_grpo.py --device cuda --shape qwen3-0.6b --steps 8   # a GPU, Qwen3-0.6B shape
    python benchmarks/bench_grpo.py --device cuda --shape qwen3-0.6b --dry-run   # print the settings, exit

Needs the ``bench`` extra (``pip install -e .[bench]``: trl) and bitsandbytes. One random model (saved once
to a temporary folder with a byte-level BPE tokenizer trained on the arithmetic prompts), the same prompts
(``generate_arithmetic(difficulty=0, style="short", chat=True)``, reward ``numeric_answer_reward``), the same
group size, prompts per step, completion length, temperature, 4-bit NF4 base (double quantization) with the
same LoRA adapter (r, alpha, every attention and MLP projection), learning rate, ``beta=0``, one iteration,
token-level loss normalisation (RhythmGRPO ``token-mean`` = TRL ``dapo``) and no gradient checkpointing,
through four routes:

* ``uniform``:  RhythmGRPO, ``credit.strategy=uniform`` (plain GRPO), ``sampling.backend=auto`` (for these
  model sizes: a dense copy of the policy with the LoRA delta merged, float32 on CPU, bfloat16 on CUDA);
* ``uniform-alt``: the same sampling from the 4-bit policy itself (``backend=policy``), to report the rollout
  speed and memory of each path;
* ``coupled``:  RhythmGRPO, ``credit.strategy=coupled`` (attention-rhythm credit; backend ``auto``);
* ``trl``:      ``trl.GRPOTrainer`` on the same checkpoint loaded in 4-bit (``BitsAndBytesConfig``) with a
  peft ``LoraConfig``, sampling from the 4-bit policy (TRL's only non-vLLM path).

Every route runs in a fresh subprocess: ``--warmup`` steps, then ``--steps`` measured steps; the routes run
``--repeats`` times round-robin and the table shows, per route, the run with the median step time (the faster
of two). Per route:

* rollout tok/s: completion tokens (up to and including EOS) / wall time of the ``generate`` call;
* update tok/s: prompt + completion tokens of the step / (step time - generation time), i.e. everything
  after sampling: rewards, scoring, credit, loss forward/backward, optimizer step, logging;
* step s: wall time of a whole optimizer step (mean over the measured steps);
* peak MB: on CPU the resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs when training
  starts, after the model and adapter are loaded) minus the resident set at that moment; on CUDA
  ``torch.cuda.max_memory_allocated`` minus the allocated memory at that moment. So the quantized model is
  not counted; dense rollout copies, optimizer state and activations are.

Notes on the TRL side: GRPOConfig defaults to ``gradient_checkpointing=True`` and ``bf16=True``, both set off
here (on CUDA ``bf16`` stays on, TRL's default, and RhythmGRPO's Trainer gets ``precision="bf16-mixed"``, the
same autocast, with a bfloat16 compute dtype for both tools); TRL casts the LoRA
weights of any quantized model to bfloat16 (``--trl-fp32-adapter`` casts them back). With ``num_iterations=1``
neither tool makes a separate no-grad pass for the old log-probabilities: RhythmGRPO captures the RhythmTrace
and the logged entropy in the update's own forward.

The machine may be shared and noisy: read the ratios, and rerun before trusting a few percent. CPU workers
default to one thread (``--threads``), because oversubscribed OpenMP threads on a busy machine make every
route 10-40x slower, erratically. On CPU, glibc keeps freed activations in its heap, so for a tiny model the
RSS peak is mostly allocator behaviour; ``--malloc-mmap-threshold 131072`` makes it track live memory (at a
cost in speed: take timings from a run without it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import PeakMemory  # benchmarks/peak_memory.py: scripts run with benchmarks/ on sys.path

ROUTES = ("uniform", "uniform-alt", "coupled", "trl")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RESULT_PREFIX = "BENCH_RESULT "


# ---------------------------------------------------------------------------------------------- settings
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--shape", choices=("llama-tiny", "qwen3-0.6b"), default="llama-tiny")
    parser.add_argument("--steps", type=int, default=8, help="measured optimizer steps per route")
    parser.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of every route, round-robin; the median-step-time run is shown"
    )
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--group", type=int, default=4, help="completions per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256, help="llama-tiny: hidden size")
    parser.add_argument("--layers", type=int, default=8, help="llama-tiny: layers")
    parser.add_argument("--heads", type=int, default=8, help="llama-tiny: attention heads")
    parser.add_argument("--kv-heads", type=int, default=4, help="llama-tiny: key/value heads")
    parser.add_argument("--intermediate", type=int, default=None, help="llama-tiny: MLP size (default 4 x hidden)")
    parser.add_argument("--tokenizer-vocab", type=int, default=512, help="BPE vocabulary trained on the prompts")
    parser.add_argument(
        "--model-vocab", type=int, default=None, help="model vocabulary (default: the tokenizer's; qwen3-0.6b: 151936)"
    )
    parser.add_argument("--n-prompts", type=int, default=64, help="size of the prompt pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per worker on --device cpu (OMP_NUM_THREADS; 0: torch's default). On a shared machine, "
        "more threads than idle cores make every OpenMP region wait for preempted threads: 10-40x slower, erratic",
    )
    parser.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=0,
        help="CPU: glibc MALLOC_MMAP_THRESHOLD_ of the workers in bytes (0: glibc's dynamic default). A fixed "
        "threshold such as 131072 returns freed activations to the OS at once, so the peak tracks live memory "
        "instead of the heap the allocator keeps, but every route runs slower",
    )
    parser.add_argument(
        "--lora-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="RhythmGRPO's LoRA factors (lora.dtype; bfloat16 is what TRL does for quantized models)",
    )
    parser.add_argument(
        "--trl-fp32-adapter",
        action="store_true",
        help="cast TRL's LoRA weights back to float32 (TRL casts them to bfloat16 for every quantized model)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the settings and the model config, then exit")
    parser.add_argument("--worker", choices=ROUTES, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def prompt_records(args) -> list[dict]:
    from lightning_reasonattn.tasks import generate_arithmetic

    return generate_arithmetic(args.n_prompts, seed=args.seed, difficulty=0, style="short", chat=True)


def model_config(args, vocab_size: int, bos_id: int | None = None, eos_id: int | None = None):
    """The random model's config: a small Llama, or the shape of Qwen3-0.6B."""
    ids = dict(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    if args.shape == "qwen3-0.6b":
        from transformers import Qwen3Config

        return Qwen3Config(
            vocab_size=args.model_vocab or 151936,
            hidden_size=1024,
            intermediate_size=3072,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=4096,
            tie_word_embeddings=True,
            **ids,
        )
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=args.model_vocab or vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate or 4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=1024,
        **ids,
    )


def build_checkpoint(args, folder: Path) -> None:
    """Random model + a BPE tokenizer trained on the prompts, saved like ``testing.tiny_checkpoint`` does."""
    import torch
    from transformers import AutoModelForCausalLM

    from lightning_reasonattn.testing import tiny_tokenizer

    texts = [
        f"<|im_start|>user\n{r['prompt'][-1]['content']}<|im_end|>\n<|im_start|>assistant\n{r['answer']}<|im_end|>\n"
        for r in prompt_records(args)
    ]
    tokenizer = tiny_tokenizer(texts, vocab_size=args.tokenizer_vocab)
    config = model_config(args, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(args.seed)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with open(folder / "prompts.jsonl", "w") as fh:
        for record in prompt_records(args):
            fh.write(json.dumps(record) + "\n")


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- workers
def run_rhythm(args, route: str, folder: Path) -> dict:
    import lightning.pytorch as pl
    import torch

    from lightning_reasonattn.grpo import RhythmGRPO
    from lightning_reasonattn.grpo import step as grpo_step
    from lightning_reasonattn.grpo.settings import (
        CreditSettings,
        LossSettings,
        OptimSettings,
        RewardSettings,
        SamplingSettings,
        TaskSettings,
    )
    from lightning_reasonattn.models import LoraSettings
    from lightning_reasonattn.rollout.dense import DenseRollout

    pl.seed_everything(args.seed, verbose=False)
    backend = "policy" if route == "uniform-alt" else "auto"
    module = RhythmGRPO(
        model=str(folder),
        quantization="nf4",
        double_quant=True,
        lora=LoraSettings(
            r=args.lora_r, alpha=args.lora_alpha, dropout=0.0, target_modules=LORA_TARGETS, dtype=args.lora_dtype
        ),
        gradient_checkpointing=False,
        task=TaskSettings(name=str(folder / "prompts.jsonl"), seed=args.seed),
        rewards=RewardSettings(functions=["numeric"]),
        prompts_per_step=args.prompts,
        group_size=args.group,
        sampling=SamplingSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, backend=backend),
        credit=CreditSettings(strategy="coupled" if route == "coupled" else "uniform"),
        loss=LossSettings(beta=0.0, loss_type="token-mean", num_iterations=1, scale_rewards="group"),
        optim=OptimSettings(lr=args.lr, optimizer="adamw"),
        log_completions_every_n_steps=0,
    )
    memory = PeakMemory(args.device)
    gen_s, gen_tokens, update_tokens, lengths, step_s = [], [], [], [], []
    original_rollout = grpo_step.GRPOStep.rollout

    def timed_rollout(self, records, **kwargs):  # e.g. the step's sampling key
        out = original_rollout(self, records, **kwargs)
        gen_s.append(out.seconds)
        gen_tokens.append(int(out.completion_mask.sum()))
        update_tokens.append(int(out.attention_mask.sum()))
        lengths.append(float(out.completion_mask.sum(-1).float().mean()))
        return out

    parts: dict[str, list[float]] = {"score": [], "credit": [], "update": []}

    def timed(name, method):
        def wrapper(*a, **k):
            _sync(args.device)
            t0 = time.perf_counter()
            out = method(*a, **k)
            _sync(args.device)
            parts[name].append(time.perf_counter() - t0)
            return out

        return wrapper

    # The step's stages (GRPOStep's methods) and the credit of a step's rows, a function of grpo.credit that the
    # step calls (inside update, or score); patched in this worker process only.
    grpo_step.GRPOStep.rollout = timed_rollout
    for name in ("score", "update"):
        setattr(grpo_step.GRPOStep, name, timed(name, getattr(grpo_step.GRPOStep, name)))
    grpo_step.rows_gamma = timed("credit", grpo_step.rows_gamma)
    parts["sync"] = []  # re-merging the adapter into the dense rollout copy, after update()
    sync_seconds = [0.0]
    dense_sync = DenseRollout.sync

    def timed_sync(self, all_weights: bool = False):
        t0 = time.perf_counter()
        dense_sync(self, all_weights)
        if not all_weights:  # the step's sync, not the initial copy
            _sync(args.device)
            sync_seconds[0] += time.perf_counter() - t0

    DenseRollout.sync = timed_sync  # this worker process only

    class Timer(pl.Callback):
        def on_train_start(self, trainer, pl_module):  # after the model and adapter are loaded
            memory.reset()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            _sync(args.device)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            _sync(args.device)
            step_s.append(time.perf_counter() - self.t0)
            parts["sync"].append(sync_seconds[0])
            sync_seconds[0] = 0.0

    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision="bf16-mixed" if args.device == "cuda" else "32-true",  # TRL's bf16=True on CUDA
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timer()],
    )
    trainer.fit(module)
    resolved = "dense" if module._dense is not None else "policy"
    extra_mb = memory.extra_mb()
    del trainer, module
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return dict(
        backend=resolved,
        gen_s=gen_s,
        gen_tokens=gen_tokens,
        update_tokens=update_tokens,
        lengths=lengths,
        step_s=step_s,
        extra_mb=extra_mb,
        **{f"{k}_s": v for k, v in parts.items()},
    )


def run_trl(args, folder: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from lightning_reasonattn.models import exact_cpu_4bit
    from lightning_reasonattn.rewards import numeric_answer_reward

    cuda = args.device == "cuda"
    compute = torch.bfloat16 if cuda else torch.float32
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=quant, dtype=compute, device_map={"": args.device}, attn_implementation="sdpa"
    )
    exact_cpu_4bit(model)  # the same bitsandbytes CPU kernel as RhythmGRPO (no bf16 repacking in eval mode)
    records = prompt_records(args)
    dataset = Dataset.from_list(records)
    lora = LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    config = GRPOConfig(
        output_dir=str(folder.parent / "trl-output"),  # inside the driver's temporary folder; nothing is saved
        use_cpu=not cuda,
        bf16=cuda,  # TRL defaults to bf16 mixed precision; on CPU the benchmark computes in float32
        gradient_checkpointing=False,  # TRL defaults to True
        per_device_train_batch_size=args.prompts * args.group,
        gradient_accumulation_steps=1,
        num_generations=args.group,
        max_completion_length=args.max_new_tokens,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=1.0,
        beta=0.0,
        num_iterations=1,
        epsilon=0.2,
        loss_type="dapo",  # token-level: sum over tokens / active tokens of the batch (RhythmGRPO's token-mean)
        scale_rewards="group",
        mask_truncated_completions=False,
        max_steps=args.warmup + args.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=args.seed,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=numeric_answer_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
    )
    if args.trl_fp32_adapter:
        for param in trainer.model.parameters():
            if param.requires_grad:
                param.data = param.data.float()
    memory = PeakMemory(args.device)
    gen_s, gen_tokens, update_tokens, lengths, step_s = [], [], [], [], []
    generate_single_turn = trainer._generate_single_turn  # the model.generate call and nothing else
    generate_and_score = trainer._generate_and_score_completions

    def timed_generate(*a, **k):
        _sync(args.device)
        t0 = time.perf_counter()
        completion_ids, logprobs = generate_single_turn(*a, **k)
        _sync(args.device)
        gen_s.append(time.perf_counter() - t0)
        gen_tokens.append(sum(len(ids) for ids in completion_ids))
        lengths.append(gen_tokens[-1] / len(completion_ids))
        return completion_ids, logprobs

    def counted_generate_and_score(*a, **k):
        out = generate_and_score(*a, **k)
        update_tokens.append(int(out["prompt_mask"].sum()) + int(out["completion_mask"].sum()))
        return out

    trainer._generate_single_turn = timed_generate
    trainer._generate_and_score_completions = counted_generate_and_score

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):  # after the model and adapter are loaded
            memory.reset()

        def on_step_begin(self, *a, **k):
            _sync(args.device)
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            _sync(args.device)
            step_s.append(time.perf_counter() - self.t0)

    trainer.add_callback(Timer())
    trainer.train()
    adapter_dtype = str(next(p.dtype for p in trainer.model.parameters() if p.requires_grad)).replace("torch.", "")
    return dict(
        backend=f"policy, adapter {adapter_dtype}",
        gen_s=gen_s,
        gen_tokens=gen_tokens,
        update_tokens=update_tokens,
        lengths=lengths,
        step_s=step_s,
        extra_mb=memory.extra_mb(),
    )


def worker(args) -> dict:
    import torch

    if args.threads > 0 and args.device == "cpu":
        torch.set_num_threads(args.threads)
    folder = Path(args.model_dir)
    raw = run_trl(args, folder) if args.worker == "trl" else run_rhythm(args, args.worker, folder)
    w = args.warmup
    keys = ["gen_s", "gen_tokens", "update_tokens", "lengths", "step_s"]
    keys += [key for key in ("score_s", "credit_s", "update_s", "sync_s") if key in raw]
    measured = {key: raw[key][w:] for key in keys}
    n = len(measured["step_s"])
    if n == 0 or any(len(v) != n for v in measured.values()):
        counts = {k: len(v) for k, v in raw.items() if isinstance(v, list)}
        raise RuntimeError(f"route {args.worker}: no measured step, or unequal counts per step: {counts}")
    rest = sum(s - g for s, g in zip(measured["step_s"], measured["gen_s"], strict=True))
    return {
        "route": args.worker,
        "backend": raw["backend"],
        "steps": n,
        "rollout_tps": sum(measured["gen_tokens"]) / sum(measured["gen_s"]),
        "update_tps": sum(measured["update_tokens"]) / rest,
        "step_s": sum(measured["step_s"]) / n,
        "gen_s": sum(measured["gen_s"]) / n,
        "rest_s": rest / n,
        "length": sum(measured["lengths"]) / n,
        "extra_mb": raw["extra_mb"],
        **{key: sum(measured[key]) / n for key in ("score_s", "credit_s", "update_s", "sync_s") if key in measured},
    }


# ---------------------------------------------------------------------------------------------- driver
def describe(args, vocab_size: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(args, vocab_size)
    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (
        f"model: {config.model_type} ({args.shape}), {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads / {config.num_key_value_heads} KV heads, head_dim {head_dim}, "
        f"MLP {config.intermediate_size}, vocab {config.vocab_size}, "
        f"{params / 1e6:.1f}M params, random weights; 4-bit NF4 (double quant) + LoRA r={args.lora_r} "
        f"alpha={args.lora_alpha} ({args.lora_dtype} in RhythmGRPO) on "
        f"{','.join(t.removesuffix('_proj') for t in LORA_TARGETS)}\n"
        f"run: {args.device}, {args.prompts} prompts x G={args.group}, {args.max_new_tokens} new tokens, "
        f"temperature {args.temperature}, lr {args.lr}, beta 0, 1 iteration, token-level loss, no grad checkpointing; "
        f"{args.warmup} warm-up + {args.steps} measured steps per route"
        f"{f', {args.threads} CPU thread(s) per worker' if args.device == 'cpu' and args.threads > 0 else ''}"
        f"{f', MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold}' if args.malloc_mmap_threshold > 0 else ''}; "
        f"{args.repeats} runs per route, the one with the median step time shown"
    )


def forwarded(args) -> list[str]:
    """The command-line flags that a worker needs (everything but the driver's own)."""
    out = []
    for key, value in vars(args).items():
        if key in ("routes", "repeats", "dry_run", "worker", "model_dir") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        out += [flag] if value is True else [flag, str(value)]
    return out


def main() -> None:
    args = parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(args)), flush=True)
        return
    if args.dry_run:
        note = "\n(the vocabulary will be the trained tokenizer's)" if args.shape == "llama-tiny" else ""
        print(describe(args, args.tokenizer_vocab) + note)
        print("settings: " + json.dumps({k: v for k, v in vars(args).items() if k not in ("worker", "model_dir")}))
        print("routes: " + ", ".join(args.routes))
        return

    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        folder = Path(tmp) / "model"
        build_checkpoint(args, folder)
        vocab_size = json.loads((folder / "config.json").read_text())["vocab_size"]
        print(describe(args, vocab_size), flush=True)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        if args.threads > 0 and args.device == "cpu":
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
        if args.malloc_mmap_threshold > 0 and args.device == "cpu":
            env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
        runs: dict[str, list[dict]] = {route: [] for route in args.routes}
        failed = set()
        for repeat in range(args.repeats):  # round-robin, so that a busy spell of the machine hits every route
            for route in args.routes:
                if route in failed:
                    continue
                cmd = [sys.executable, __file__, "--worker", route, "--model-dir", str(folder), *forwarded(args)]
                t0 = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
                lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
                if out.returncode != 0 or not lines:
                    print(f"\nroute {route} FAILED (exit {out.returncode}):\n{out.stderr[-4000:]}", flush=True)
                    failed.add(route)
                    continue
                runs[route].append(json.loads(lines[-1][len(RESULT_PREFIX) :]))
                r = runs[route][-1]
                print(
                    f"  run {repeat + 1}/{args.repeats} {route}: {time.perf_counter() - t0:.0f} s "
                    f"(step {r['step_s']:.2f} s, rollout {r['rollout_tps']:.0f} tok/s, "
                    f"update {r['update_tps']:.0f} tok/s, extra peak {r['extra_mb']:.0f} MB, {r['backend']})",
                    flush=True,
                )
    # Per route, the run with the median step time (the faster of two), all its numbers together.
    results = {}
    for route, done in runs.items():
        if done and route not in failed:
            results[route] = sorted(done, key=lambda r: r["step_s"])[(len(done) - 1) // 2]

    mem = "extra peak MB" if args.device == "cpu" else "extra peak MiB (CUDA alloc)"
    print()
    header = (
        f"{'route':<12} | {'rollout backend':<24} | {'rollout tok/s':>13} | {'update tok/s':>12} | {'step s':>7} "
        f"| {'gen s':>6} | {'rest s':>6} | {'mean len':>8} | {mem:>13}"
    )
    print(header)
    print("-" * len(header))
    for route in args.routes:
        if route not in results:
            print(f"{route:<12} | failed (see above)")
            continue
        r = results[route]
        print(
            f"{route:<12} | {r['backend']:<24} | {r['rollout_tps']:>13.1f} | {r['update_tps']:>12.1f} | "
            f"{r['step_s']:>7.2f} | {r['gen_s']:>6.2f} | {r['rest_s']:>6.2f} | {r['length']:>8.1f} | "
            f"{r['extra_mb']:>13.1f}"
        )

    rhythm = [route for route in args.routes if route in results and "score_s" in results[route]]
    if rhythm:
        print()
        print("RhythmGRPO step breakdown, s per step (rollout = the generate call; credit runs inside update, or")
        print("inside score with num_iterations > 1; sync = re-merging the adapter into the dense copy after the")
        print("update; other = prompt encoding, decoding, logging and hooks)")
        print(
            f"{'route':<12} | {'rollout':>7} | {'score':>7} | {'update':>7} | {'of it credit':>12} | "
            f"{'sync':>7} | {'other':>7}"
        )
        for route in rhythm:
            r = results[route]
            other = r["step_s"] - r["gen_s"] - r["score_s"] - r["update_s"] - r["sync_s"]
            print(
                f"{route:<12} | {r['gen_s']:>7.3f} | {r['score_s']:>7.3f} | {r['update_s']:>7.3f} | "
                f"{r['credit_s']:>12.3f} | {r['sync_s']:>7.3f} | {other:>7.3f}"
            )

    print()
    print("ratios")
    uni, trl, cou, alt = (results.get(name) for name in ("uniform", "trl", "coupled", "uniform-alt"))
    if uni and trl:
        print(f"  uniform / TRL rollout tok/s:  {uni['rollout_tps'] / trl['rollout_tps']:7.2f}x  (target >= 1)")
        print(f"  uniform / TRL update tok/s:   {uni['update_tps'] / trl['update_tps']:7.2f}x  (target >= 1)")
        print(f"  uniform / TRL step time:      {uni['step_s'] / trl['step_s']:7.2f}x  (target <= 1)")
        if trl["extra_mb"] > 0:
            print(f"  uniform / TRL peak memory:    {uni['extra_mb'] / trl['extra_mb']:7.2f}x  (target <= 1)")
    if alt and trl:
        print(f"  uniform-alt ({alt['backend']}) / TRL step time:   {alt['step_s'] / trl['step_s']:7.2f}x")
        if trl["extra_mb"] > 0:
            print(f"  uniform-alt ({alt['backend']}) / TRL peak memory: {alt['extra_mb'] / trl['extra_mb']:7.2f}x")
    if uni and cou:
        print(f"  coupled over uniform, step:   {100 * (cou['step_s'] / uni['step_s'] - 1):+7.1f}%  (target <= +5%)")
        rest = 100 * (cou["rest_s"] / uni["rest_s"] - 1)  # the rollout is the same path in both, and the noisiest
        print(f"  coupled over uniform, rest:   {rest:+7.1f}%  (after the rollout: score, credit, update)")
    if uni and alt:
        dense, policy = (uni, alt) if uni["backend"] == "dense" else (alt, uni)
        print(f"  dense / policy rollout tok/s: {dense['rollout_tps'] / policy['rollout_tps']:7.2f}x")
    if len(results) < len(args.routes):
        sys.exit(1)


if __name__ == "__main__":
    main()
