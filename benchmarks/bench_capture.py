"""Time and peak memory of capture_rhythm vs the dense eager route vs a plain forward, on both capture routes.

Usage::

    python benchmarks/bench_capture.py                      # N = 512 1024 2048 4096, CPU, every route
    python benchmarks/bench_capture.py --sizes 1024 4096 --routes gpt_plain gpt_capture

Three routes over the same random transformers model (Llama-shaped, grouped-query attention) and the same batch
(one sequence of N tokens, the first N/8 of them the prompt):

* ``plain``:   ``model(ids)`` with SDPA, no capture;
* ``capture``: ``capture_rhythm`` (SDPA everywhere, blockwise reductions on the 5 middle layers);
* ``eager``:   the dense reference: eager attention with ``output_attentions=True``, then
  ``rhythm_from_attentions`` on the stacked maps of the 5 middle layers.

Two over the nanoGPT-style ``lightning_reasonattn.NanoGPT`` (the model of ``examples/watch_rhythm_emerge.py``) of the
same shape (as many heads for
keys as for queries: nanoGPT has no grouped-query attention), whose attention calls
``F.scaled_dot_product_attention(is_causal=True)``:

* ``gpt_plain``:   ``model(ids)``;
* ``gpt_capture``: ``capture_rhythm`` through the SDPA route (the calls watched by a ``TorchFunctionMode``, the
  blocks found from the model's structure, the same blockwise reductions on the 5 middle layers).

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

ROUTES = ("plain", "capture", "eager", "gpt_plain", "gpt_capture")


def gpt_model(n: int, model_args: dict):
    """The example's nanoGPT-style GPT with the shape of the Llama (its key heads = its query heads)."""
    from lightning_reasonattn import NanoGPT

    return NanoGPT(
        model_args["vocab_size"],
        max(n, 4096),
        model_args["num_hidden_layers"],
        model_args["num_attention_heads"],
        model_args["hidden_size"],
    ).eval()


def worker(route: str, n: int, repeats: int, model_args: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from lightning_reasonattn import capture_rhythm
    from lightning_reasonattn.functional import rhythm_from_attentions, select_layers

    torch.manual_seed(0)
    if route.startswith("gpt_"):
        model = gpt_model(n, model_args)
    else:
        config = LlamaConfig(max_position_embeddings=max(n, 4096), **model_args)
        attn = "eager" if route == "eager" else "sdpa"
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn).eval()
    ids = torch.randint(0, model_args["vocab_size"], (1, n))
    mask = torch.ones_like(ids)
    resp = torch.zeros(1, n, dtype=torch.bool)
    resp[:, n // 8 :] = True
    layers = select_layers(model_args["num_hidden_layers"])

    def run():
        with torch.no_grad():
            if route == "plain":
                return model(ids, attention_mask=mask, use_cache=False).logits.sum().item()
            if route == "gpt_plain":
                return model(ids).sum().item()
            if route in ("capture", "gpt_capture"):
                return capture_rhythm(model, ids, mask, resp).waad.nansum().item()
            out = model(ids, attention_mask=mask, use_cache=False, output_attentions=True)
            maps = torch.stack([out.attentions[i] for i in layers], 1)
            del out
            return rhythm_from_attentions(maps, resp, layers).waad.nansum().item()

    def plain_gpt():
        with torch.no_grad():
            return model(ids).sum().item()

    peak = PeakMemory("cpu")
    peak.reset()
    run()
    extra_mb = peak.extra_mb()
    times, plain_times = [], []
    for _ in range(repeats):
        if route == "gpt_capture":  # a plain forward before each capture, in this process: the ratio of the two
            t0 = time.perf_counter()  # is measured under the same load, which a shared machine changes by the minute
            plain_gpt()
            plain_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    result = {"route": route, "n": n, "seconds": statistics.median(times), "extra_mb": extra_mb}
    if plain_times:
        result["plain_seconds"] = statistics.median(plain_times)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
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
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.repeats, model_args)))
        return

    routes = [r for r in ROUTES if r in args.routes]
    print(
        f"models: Llama ({args.heads} heads / {args.kv_heads} KV heads) and the example's GPT ({args.heads} heads), "
        f"{args.layers} layers, hidden {args.hidden}, random weights, fp32, CPU "
        f"({args.threads or 'default'} threads); batch 1, prompt N/8; median of {args.repeats} calls"
    )
    results = {}
    for n in args.sizes:
        for route in routes:
            cmd = [sys.executable, __file__, "--worker", route, str(n), "--repeats", str(args.repeats)]
            cmd += ["--hidden", str(args.hidden), "--layers", str(args.layers)]
            cmd += ["--heads", str(args.heads), "--kv-heads", str(args.kv_heads), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"worker {route} N={n} failed:\n{out.stderr[-3000:]}")
            results[route, n] = json.loads(out.stdout.strip().splitlines()[-1])

    print()
    print(f"{'N':>6} | {'route':<11} | {'time s':>8} | {'extra peak MB':>13}")
    print("-" * 49)
    for n in args.sizes:
        for route in routes:
            r = results[route, n]
            print(f"{n:>6} | {route:<11} | {r['seconds']:>8.3f} | {r['extra_mb']:>13.1f}")
    print_ratios(results, args.sizes, routes)


def print_ratios(results: dict, sizes: list[int], routes: list[str]) -> None:
    """The ratios of each family whose routes ran."""
    if {"plain", "capture", "eager"} <= set(routes):
        print()
        print("transformers route (targets at N=4096: capture time <= 2.0x plain, extra memory <= 10% of eager's)")
        print(f"{'N':>6} | {'capture/plain time':>18} | {'eager/plain time':>16} | {'capture/eager extra mem':>23}")
        print("-" * 74)
        for n in sizes:
            plain, cap, eager = (results[r, n] for r in ("plain", "capture", "eager"))
            cap_extra = cap["extra_mb"] - plain["extra_mb"]
            eager_extra = eager["extra_mb"] - plain["extra_mb"]
            mem_ratio = cap_extra / eager_extra if eager_extra > 0 else float("nan")
            print(
                f"{n:>6} | {cap['seconds'] / plain['seconds']:>17.2f}x "
                f"| {eager['seconds'] / plain['seconds']:>15.2f}x | {100 * mem_ratio:>22.1f}%"
            )
    if {"gpt_plain", "gpt_capture"} <= set(routes):
        print()
        print(
            "SDPA route (target at N = 1024 and 4096: capture time <= 1.3x plain; its extra memory grows like N, not "
            "N^2: x4 from 1024 to 4096, not x16). Time: capture over the plain forwards run before each capture in "
            "its process; memory: over the gpt_plain process's"
        )
        print(f"{'N':>6} | {'capture/plain time':>18} | {'capture extra MB':>16} | {'extra MB / N x 1000':>19}")
        print("-" * 70)
        for n in sizes:
            plain, cap = results["gpt_plain", n], results["gpt_capture", n]
            extra = cap["extra_mb"] - plain["extra_mb"]
            ratio = cap["seconds"] / cap["plain_seconds"]
            print(f"{n:>6} | {ratio:>17.2f}x | {extra:>16.1f} | {1000 * extra / n:>19.2f}")


if __name__ == "__main__":
    main()
