"""Start-up time of the package and of the ``reasonattn`` command, against another checkout of the project.

Usage::

    python benchmarks/bench_startup.py --before ../base          # 5 repeats of each, alternating the checkouts
    python benchmarks/bench_startup.py --before ../base --repeats 9

Each measurement is a fresh interpreter (``OMP_NUM_THREADS=1``) whose ``PYTHONPATH`` puts one checkout first,
timed from start to exit: ``import lightning_reasonattn``, ``import lightning_reasonattn.functional``, the first use
of the math (``from lightning_reasonattn.functional import waad``, which needs torch) and ``reasonattn --help`` (the
console script's ``main`` with ``--help``). The checkouts alternate, so that the machine's
noise hits both alike. Printed: the median and the range of each, in seconds, and the ratios of the medians last
(before / after: above 1 when this checkout starts faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBES = {
    "import lightning_reasonattn": "import lightning_reasonattn",
    "import lightning_reasonattn.functional": "import lightning_reasonattn.functional",
    "from ...functional import waad (torch)": "from lightning_reasonattn.functional import waad",
    "reasonattn --help": "import sys\nfrom lightning_reasonattn.cli import main\n"
    "try:\n    main(['--help'])\nexcept SystemExit:\n    pass",
}
"""What is timed: the code a fresh interpreter runs."""


def timed(code: str, checkout: Path) -> float:
    """Seconds from the start of a fresh interpreter running ``code`` with ``checkout`` first on its path, to its
    exit."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL, cwd=checkout)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (its repository root)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements of each probe in each checkout")
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": ROOT}
    for name, path in checkouts.items():
        if not (path / "lightning_reasonattn" / "__init__.py").is_file():
            parser.error(f"--before {path}: not a checkout of the project (no lightning_reasonattn/ in it)")
        print(f"{name}: {path}")
    for probe in PROBES.values():  # once each, unmeasured: the file cache is warm for both
        for path in checkouts.values():
            timed(probe, path)
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for what, probe in PROBES.items():
            for name, path in checkouts.items():
                seconds.setdefault((what, name), []).append(timed(probe, path))

    print(f"\n{args.repeats} runs of each, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end")
    print(f"| {'what':<38} | {'before s (median, range)':>26} | {'after s (median, range)':>26} |")
    print(f"| {'-' * 38} | {'-' * 25}: | {'-' * 25}: |")
    for what in PROBES:
        cells = []
        for name in checkouts:
            runs = seconds[(what, name)]
            cells.append(f"{statistics.median(runs):.2f} ({min(runs):.2f}-{max(runs):.2f})")
        print(f"| {what:<38} | {cells[0]:>26} | {cells[1]:>26} |")
    print()
    for what in PROBES:
        before = statistics.median(seconds[(what, "before")])
        after = statistics.median(seconds[(what, "after")])
        print(f"before / after, {what}: {before / after:.2f}x")


if __name__ == "__main__":
    main()
