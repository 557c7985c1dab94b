"""The mutation score of each mutated module, from the results mutmut keeps in ``mutants/`` (``make mutate``).

A mutant is *caught* when a test failed on it (killed), ran past its time limit (timeout) or crashed the test process;
it is *missed* when every test passed (survived), when no selected test calls its function (no tests) or when mutmut
could not tell (suspicious). Score = caught / (caught + missed). Mutants not yet run (an interrupted run: ``make
mutate`` again resumes it) are counted apart and left out of the score.

Usage: ``python tools/mutation_score.py [--mutants DIR] [--survivors]``; prints one row per module and the total last.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py, status_by_exit_code): the test run's exit code, or mutmut's own markers.
KILLED = {1, 2, 3}  # a test failed; 2: the tests could not even be collected under the mutant (an import broken
# by it: mutmut calls it "interrupted", but no run is interrupted by hand here); 3: pytest's internal error
TIMEOUT = {36, 24, -24, 152}  # mutmut's timeout marker and SIGXCPU, as the CPU time limit reports it
# 255: the test run raised instead of returning (mutmut's worker exits -1, e.g. pytest's usage error 4 when a test id
# is not found); mutmut calls it a timeout, but no test failed: not caught, listed apart to be looked into
ERROR = {255}
CRASHED = {-9, -11}  # the test process was killed by a signal (mutmut names these "segfault")
SURVIVED = {0}
NO_TESTS = {5, 33}  # pytest collected no test; mutmut found no test that calls the function
SKIPPED = {34, 37}  # skipped by mutmut, or caught by a type checker (none is configured here)


@dataclass
class ModuleScore:
    """The mutants of one module, by outcome (names of the missed ones kept, to list them)."""

    module: str
    killed: int = 0
    timeout: int = 0
    crashed: int = 0
    skipped: int = 0
    not_run: int = 0
    missed: dict[str, list[str]] = field(
        default_factory=lambda: {"survived": [], "no tests": [], "suspicious": [], "run error": []}
    )

    @property
    def caught(self) -> int:
        return self.killed + self.timeout + self.crashed

    @property
    def counted(self) -> int:
        return self.caught + sum(len(names) for names in self.missed.values())

    @property
    def score(self) -> float | None:
        """Percent of the run mutants that were caught (``None`` while none has run)."""
        return 100.0 * self.caught / self.counted if self.counted else None

    def add(self, name: str, exit_code: int | None) -> None:
        if exit_code is None:
            self.not_run += 1
        elif exit_code in KILLED:
            self.killed += 1
        elif exit_code in TIMEOUT:
            self.timeout += 1
        elif exit_code in CRASHED:
            self.crashed += 1
        elif exit_code in SKIPPED:
            self.skipped += 1
        elif exit_code in SURVIVED:
            self.missed["survived"].append(name)
        elif exit_code in NO_TESTS:
            self.missed["no tests"].append(name)
        elif exit_code in ERROR:
            self.missed["run error"].append(name)
        else:
            self.missed["suspicious"].append(name)


def module_scores(mutants: Path) -> list[ModuleScore]:
    """One ``ModuleScore`` per source file that has mutants, sorted by path.

    Args:
        mutants: mutmut's folder, holding ``<source path>.meta`` JSON files with ``exit_code_by_key``.
    """
    scores = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        if not exit_codes:
            continue
        score = ModuleScore(str(meta.relative_to(mutants))[: -len(".meta")])
        for name, code in sorted(exit_codes.items()):
            score.add(name, code)
        scores.append(score)
    return scores


def total(scores: list[ModuleScore]) -> ModuleScore:
    out = ModuleScore("total")
    for s in scores:
        out.killed, out.timeout, out.crashed = out.killed + s.killed, out.timeout + s.timeout, out.crashed + s.crashed
        out.skipped, out.not_run = out.skipped + s.skipped, out.not_run + s.not_run
        for kind, names in s.missed.items():
            out.missed[kind] += names
    return out


def table(scores: list[ModuleScore]) -> str:
    """The per-module table, the total last."""
    rows = [*scores, total(scores)]
    width = max(len(s.module) for s in rows)
    header = f"{'module':<{width}}  mutants  killed  timeout  survived  no tests  other  not run   score"
    lines = [header, "-" * len(header)]
    for s in rows:
        if s.module == "total":
            lines.append("-" * len(header))
        other = len(s.missed["suspicious"]) + len(s.missed["run error"]) + s.crashed
        score = "-" if s.score is None else f"{s.score:.1f}%"
        lines.append(
            f"{s.module:<{width}}  {s.counted + s.skipped + s.not_run:>7}  {s.killed:>6}  {s.timeout:>7}"
            f"  {len(s.missed['survived']):>8}  {len(s.missed['no tests']):>8}  {other:>5}  {s.not_run:>7}"
            f"  {score:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default: mutants)")
    parser.add_argument("--survivors", action="store_true", help="list every missed mutant (see: mutmut show NAME)")
    args = parser.parse_args(argv)
    if not args.mutants.is_dir():
        parser.error(f"--mutants {args.mutants}: no such folder: run `make mutate` (mutmut run) first")
    scores = module_scores(args.mutants)
    if not scores:
        parser.error(f"--mutants {args.mutants}: no mutmut results (*.py.meta) in it: run `make mutate` first")
    if args.survivors:
        for kind, names in total(scores).missed.items():
            for name in names:
                print(f"{kind}: {name}")
        print()
    print(table(scores))
    not_run = total(scores).not_run
    if not_run:
        print(f"{not_run} mutants not run yet (an interrupted run): `make mutate` again resumes it.")
    errors = len(total(scores).missed["run error"])
    if errors:
        print(
            f"{errors} mutants were run errors (counted as not caught): their tests could not be run by id, often an"
            " id that differs between sessions (an object's repr in a parametrize id: compare `pytest --co -q` run"
            " twice). `--survivors` lists them; fix the ids and run them again: `.venv/bin/mutmut run NAME ...`."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
