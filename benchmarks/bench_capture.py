"""Time and peak memory of capture_rhythm vs the dense eager route vs a plain forward.

Usage::

    python benchmarks/bench_capture.py                      # N = 512 1024 2048 4096, CPU
    python benchmarks/bench_capture.py --sizes 512 --repeats 2

Three routes over the same random model (Llama-shaped, grouped-query attention) and the same batch
(one sequence of N tokens, the first N/8 of them the prompt):

* ``plain``:   ``model(ids)`` with SDPA, no capture;
* ``capture``: ``capture_rhythm`` (SDPA everywhere, blockwise reductions on the 5 middle layers);
* ``eager``:   the dense reference: eager attention with ``output_attentions=True``, then
  ``rhythm_from_attentions`` on the stacked maps of the 5 middle layers.

Every (route, N) runs in a fresh subprocess. Peak memory is the process's resident-set high-water mark
(VmHWM, reset through /proc/self/clear_refs just before the first call) minus its resident set at that
moment, so the model and the inputs are not counted; it is read on Linux only. Time is the median over
``--repeats`` calls after that first one. The machine may be shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from peak_memory import PeakMemory  # benchmarks/peak_memory.py: scripts run with benchmarks/ on sys.path

ROUTES = ("plain", "capture", "eager")


def worker(route: str, n: int, repeats: int, model_args: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from lightning_reasonattn import capture_rhythm
    from lightning_reasonattn.functional import rhythm_from_attentions, select_layers

    torch.manual_seed(0)
    config = LlamaConfig(max_position_embeddings=max(n, 4096), **model_args)
    attn = "eager" if route == "eager" else "sdpa"
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()
    ids = torch.randint(0, config.vocab_size, (1, n))
    mask = torch.ones_like(ids)
    resp = torch.zeros(1, n, dtype=torch.bool)
    resp[:, n // 8 :] = True
    layers = select_layers(config.num_hidden_layers)

    def run():
        with torch.no_grad():
            if route == "plain":
                return model(ids, attention_mask=mask, use_cache=False).logits.sum().item()
            if route == "capture":
                return capture_rhythm(model, ids, mask, resp).waad.nansum().item()
            out = model(ids, attention_mask=mask, use_cache=False, output_attentions=True)
            maps = torch.stack([out.attentions[i] for i in layers], 1)
            del out
            return rhythm_from_attentions(maps, resp, layers).waad.nansum().item()

    peak = PeakMemory("cpu")
    peak.reset()
    run()
    extra_mb = peak.extra_mb()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"route": route, "n": n, "seconds": statistics.median(times), "extra_mb": extra_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--worker", nargs=2, metavar=("ROUTE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_args = dict(
        vocab_size=2048,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
    )
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.repeats, model_args)))
        return

    print(
        f"model: Llama, {args.layers} layers, hidden {args.hidden}, {args.heads} heads / {args.kv_heads} KV heads, "
        f"random weights, fp32, CPU; batch 1, prompt N/8; median of {args.repeats} calls"
    )
    results = {}
    for n in args.sizes:
        for route in ROUTES:
            cmd = [sys.executable, __file__, "--worker", route, str(n), "--repeats", str(args.repeats)]
            cmd += ["--hidden", str(args.hidden), "--layers", str(args.layers)]
            cmd += ["--heads", str(args.heads), "--kv-heads", str(args.kv_heads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"worker {route} N={n} failed:\n{out.stderr[-3000:]}")
            results[route, n] = json.loads(out.stdout.strip().splitlines()[-1])

    print()
    print(f"{'N':>6} | {'route':<8} | {'time s':>8} | {'extra peak MB':>13}")
    print("-" * 46)
    for n in args.sizes:
        for route in ROUTES:
            r = results[route, n]
            print(f"{n:>6} | {route:<8} | {r['seconds']:>8.3f} | {r['extra_mb']:>13.1f}")
    print()
    print("ratios (targets at N=4096: capture time <= 2.0x plain; capture extra memory <= 10% of eager's)")
    print(f"{'N':>6} | {'capture/plain time':>18} | {'eager/plain time':>16} | {'capture/eager extra mem':>23}")
    print("-" * 74)
    for n in args.sizes:
        plain, cap, eager = (results[r, n] for r in ROUTES)
        cap_extra = cap["extra_mb"] - plain["extra_mb"]
        eager_extra = eager["extra_mb"] - plain["extra_mb"]
        mem_ratio = cap_extra / eager_extra if eager_extra > 0 else float("nan")
        print(
            f"{n:>6} | {cap['seconds'] / plain['seconds']:>17.2f}x | {eager['seconds'] / plain['seconds']:>15.2f}x "
            f"| {100 * mem_ratio:>22.1f}%"
        )


if __name__ == "__main__":
    main()
