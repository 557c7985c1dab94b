#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run (about 8 minutes on one H100/H200):
#   1. bench_grpo.py on a random Qwen3-0.6B-shaped model: RhythmGRPO (both rollout backends, uniform and
#      coupled) vs TRL's GRPOTrainer, 4-bit NF4 + LoRA, bf16 compute;
#   2. bench_recipe.py: the paper's recipe (examples/grpo_countdown_qwen3_4b.yaml: bf16-true, gradient
#      checkpointing, 8-bit AdamW, LoRA r=64) on the same shape, uniform vs coupled.
# Usage: bash benchmarks/gpu_checks.sh [OUT_DIR]   (logs go to OUT_DIR, default ./gpu-logs)
# Variables: PYTHON (default python3); DEVICE (default cuda; cpu runs the same commands on the CPU);
#   SMOKE=1 appends settings of minimal size (a 2-layer model, one step, one route and one strategy), so that
#   the commands can be checked anywhere: tests/test_benchmarks.py runs DEVICE=cpu SMOKE=1.
set -uo pipefail
out="${1:-gpu-logs}"
python="${PYTHON:-python3}"
device="${DEVICE:-cuda}"
grpo_smoke=()
recipe_smoke=()
if [ -n "${SMOKE:-}" ]; then  # later flags win: these override the shape and sizes of the commands below
    tiny=(--shape llama-tiny --hidden 32 --layers 2 --prompts 2 --group 2 --max-new-tokens 4 --steps 1 --warmup 0)
    grpo_smoke=("${tiny[@]}" --heads 2 --kv-heads 1 --n-prompts 8 --routes uniform)
    recipe_smoke=("${tiny[@]}" --n-train 8 --strategies coupled)
fi
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/env.txt"
else
    echo "device: $device" | tee "$out/env.txt"
fi
"$python" - <<'EOF' | tee -a "$out/env.txt"
import importlib
for name in ("torch", "transformers", "peft", "lightning", "bitsandbytes", "trl", "torchmetrics"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # a missing package is reported, the benchmarks say which route failed
        print(name, "MISSING", exc)
EOF
status=0
"$python" benchmarks/bench_grpo.py --device "$device" --shape qwen3-0.6b --steps 6 --warmup 2 --repeats 1 \
    ${grpo_smoke[@]+"${grpo_smoke[@]}"} 2>&1 | tee "$out/bench_grpo.txt" || status=1
"$python" benchmarks/bench_recipe.py --device "$device" --shape qwen3-0.6b --steps 3 --warmup 1 \
    ${recipe_smoke[@]+"${recipe_smoke[@]}"} 2>&1 | tee "$out/bench_recipe.txt" || status=1
exit $status
