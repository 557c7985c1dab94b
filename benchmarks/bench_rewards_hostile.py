"""Time of every built-in reward per completion on the hostile inputs of tests/test_hostile_rewards.py.

For each hostile completion and each reward (countdown, numeric without math-verify, numeric with it, format),
the first call (cold: math-verify caches its parses) and ``--repeats`` more are timed; the table shows the cold
time and the median in milliseconds. Then, by class: hostile reference values and completions of the wrong type
(the time to refuse them), answers whose evaluation explodes in math-verify (numeric with math-verify: the shape
screen refuses them before the child process), and two huge completions. The summary gives, per class and reward,
the median over the cases and the worst case, against the target of 50 ms per completion. Two more tables time
ordinary (not hostile) answers with math-verify, the price of its final say, and the slowest shapes found that pass
the screen, which the time budget (``MATH_VERIFY_TIMEOUT``) bounds as a last resort.

Run: ``python benchmarks/bench_rewards_hostile.py [--repeats 5]`` (math-verify: ``pip install
'lightning-reasonattn[math]'``; without it that column is skipped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_hostile_rewards import (  # noqa: E402
    COMPLETION_TYPE_CASES,
    EXPLODING_ANSWERS,
    HAS_MATH_VERIFY,
    HOSTILE_COMPLETIONS,
    REFERENCE_COLUMN_CASES,
    REWARDS,
)

from lightning_reasonattn.rewards import MATH_VERIFY_TIMEOUT, numeric_answer_reward  # noqa: E402
from lightning_reasonattn.rewards.math_screen import exploding_shape  # noqa: E402

TARGET_MS = 50.0
ORDINARY = [  # (completion, reference): answers math-verify is there for, and plain ones it is asked about
    ("<answer>\\frac{2}{\\sqrt{2}}</answer>", "\\sqrt{2}"),
    ("<answer>\\sqrt{8}</answer>", "2\\sqrt{2}"),
    ("so \\boxed{\\frac{\\pi}{4}}", "\\frac{\\pi}{4}"),
    ("<answer>(1, 2)</answer>", "(1,2)"),
    ("<answer>41</answer>", "42"),
    ("the answer is 2(845+1)", "1692"),
]
BACKSTOP = [  # the slowest shapes found that pass the screen: bounded by the time budget (MATH_VERIFY_TIMEOUT) alone
    "<answer>{{{{{1}}}}}</answer>",
    "<answer>\\log(3^{9999})</answer>",
    "<answer>3^{9999}</answer>",
    "<answer>\\left(\\left(7\\right)\\right)</answer>",
]
HUGE = [  # (name, completion): the size of a completion, not its shape
    ("2 million characters in the format", "<think>" + "a" * 2_000_000 + "</think><answer>1</answer>"),
    ("200 million characters", "x" * 200_000_000),
    ("1,000,000 messages", [{"role": "assistant", "content": "5"}] * 1_000_000),
    ("1,000,000 text parts", [{"role": "assistant", "content": [{"type": "text", "text": "5"}] * 1_000_000}]),
]


def timed(call, completion, repeats: int) -> tuple[float, float]:
    """``(cold ms, median ms of the repeats)``; a call that raises (a refused input) is timed to its error."""
    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        try:
            call(completion)
        except (ValueError, TypeError):
            pass
        times.append(1000 * (time.perf_counter() - start))
    return times[0], statistics.median(times[1:]) if repeats else times[0]


def class_table(title: str, cases: list[tuple[str, object]], repeats: int, results: dict) -> None:
    """Time ``(name, call)`` cases (``call(tmp)``), print them, add ``max(cold, median)`` to ``results[title]``."""
    print(f"\n{title} (cold / median ms)")
    width = max(len(name) for name, _ in cases)
    for name, call in cases:
        cold, median = timed(lambda _, call=call: call(None), None, repeats)
        results.setdefault(title, []).append((max(cold, median), name))
        print(f"  {name:<{width}}  {cold:8.3f} / {median:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the cold one (default 5)")
    args = parser.parse_args()
    rewards = [(name, call) for name, call in REWARDS if HAS_MATH_VERIFY or "math-verify" not in name]
    if not HAS_MATH_VERIFY:
        print("math-verify is not installed: its column is skipped (pip install 'lightning-reasonattn[math]')\n")
    else:  # start the math-verify process first: its start-up is paid once, not per completion
        start = time.perf_counter()
        numeric_answer_reward(None, ["<answer>\\sqrt{2}</answer>"], ["\\sqrt{2}"], use_math_verify=True)
        ms = 1000 * (time.perf_counter() - start)
        print(f"math-verify process start-up + first comparison: {ms:.0f} ms (once, and after each time-out)\n")
    width = max(len(name) for name, _ in HOSTILE_COMPLETIONS)
    print(f"{'hostile completion':<{width}}  " + "  ".join(f"{name + ' cold/med ms':>30}" for name, _ in rewards))
    results: dict[str, list[tuple[float, str]]] = {name: [] for name, _ in rewards}
    for case, completion in HOSTILE_COMPLETIONS:
        cells = []
        for name, call in rewards:
            cold, median = timed(call, completion, args.repeats)
            results[name].append((max(cold, median), case))
            cells.append(f"{cold:14.2f} / {median:13.2f}")
        print(f"{case:<{width}}  " + "  ".join(cells))

    classes: dict[str, list[tuple[float, str]]] = {}
    class_table("hostile reference values, time to refuse", [(c.name, c.call) for c in REFERENCE_COLUMN_CASES
                if not c.needs_math_verify or HAS_MATH_VERIFY], args.repeats, classes)  # fmt: skip
    class_table("completions of the wrong type, time to refuse", [(c.name, c.call) for c in COMPLETION_TYPE_CASES],
                args.repeats, classes)  # fmt: skip
    huge = [(f"{reward}: {name}", lambda _, call=call, c=c: call(c)) for name, c in HUGE for reward, call in rewards]
    class_table("huge completions", huge, 1, classes)
    screen = [(name, lambda _, c=c: exploding_shape(c)) for name, c in EXPLODING_ANSWERS]
    class_table("exploding answers: the shape screen alone", screen, args.repeats, classes)
    if HAS_MATH_VERIFY:
        exploding = [(name, lambda _, c=c: numeric_answer_reward(None, [c], ["42"], use_math_verify=True))
                     for name, c in EXPLODING_ANSWERS]  # fmt: skip
        class_table("exploding answers: numeric with math-verify (screened before the child)", exploding,
                    args.repeats, classes)  # fmt: skip

    if HAS_MATH_VERIFY:
        print("\nordinary answers, numeric with math-verify (cold ms; the built-in check alone decides plain numbers)")
        for completion, reference in ORDINARY:
            start = time.perf_counter()
            got = numeric_answer_reward(None, [completion], [reference], use_math_verify=True)
            ms = 1000 * (time.perf_counter() - start)
            print(f"{completion:<40} vs {reference:<16} {ms:8.2f} ms  reward {got[0]}")
        print(f"\nslowest shapes past the screen, numeric with math-verify (budget {MATH_VERIFY_TIMEOUT * 1000:g} ms)")
        for completion in BACKSTOP:
            start = time.perf_counter()
            got = numeric_answer_reward(None, [completion], ["42"], use_math_verify=True)
            ms = 1000 * (time.perf_counter() - start)
            start = time.perf_counter()  # the next comparison waits for the fresh process if it is still starting
            numeric_answer_reward(None, ["<answer>\\sqrt{4}</answer>"], ["2"], use_math_verify=True)
            after = 1000 * (time.perf_counter() - start)
            print(f"{completion:<45} {ms:8.2f} ms  reward {got[0]}   next comparison {after:8.2f} ms")

    print(
        f"\nper reward over {len(HOSTILE_COMPLETIONS)} hostile completions, and per class (slower of cold and median):"
    )
    for name, values in {**results, **classes}.items():
        med = statistics.median(v for v, _ in values)
        worst, case = max(values)
        print(
            f"{name[:60]:<60} median {med:8.3f} ms   worst {worst:8.2f} ms ({case[:50]})   worst / {TARGET_MS:g} ms"
            f" target: {worst / TARGET_MS:.2f}"
        )


if __name__ == "__main__":
    main()
