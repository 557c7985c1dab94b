#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run (about 8 minutes on one H100/H200):
#   1. bench_grpo.py on a random Qwen3-0.6B-shaped model: RhythmGRPO (both rollout backends, uniform and
#      coupled) vs TRL's GRPOTrainer, 4-bit NF4 + LoRA, bf16 compute;
#   2. bench_recipe.py: the paper's recipe (examples/grpo_countdown_qwen3_4b.yaml: bf16-true, gradient
#      checkpointing, 8-bit AdamW, LoRA r=64) on the same shape, uniform vs coupled.
# Usage: bash benchmarks/gpu_checks.sh [OUT_DIR]   (logs go to OUT_DIR, default ./gpu-logs)
set -uo pipefail
out="${1:-gpu-logs}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/env.txt"
python3 - <<'EOF' | tee -a "$out/env.txt"
import importlib
for name in ("torch", "transformers", "peft", "lightning", "bitsandbytes", "trl", "torchmetrics"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # a missing package is reported, the benchmarks say which route failed
        print(name, "MISSING", exc)
EOF
status=0
python3 benchmarks/bench_grpo.py --device cuda --shape qwen3-0.6b --steps 6 --warmup 2 --repeats 1 \
    2>&1 | tee "$out/bench_grpo.txt" || status=1
python3 benchmarks/bench_recipe.py --device cuda --shape qwen3-0.6b --steps 3 --warmup 1 \
    2>&1 | tee "$out/bench_recipe.txt" || status=1
exit $status
