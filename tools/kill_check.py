"""Does a test catch a mutant? Run tests against chosen mutants of the last `make mutate`, in seconds.

    python tools/kill_check.py TEST [TEST ...] -- MUTANT [MUTANT ...]

Run from the repository root after `make mutate` has made ``mutants/``. ``TEST`` is a pytest path or id (in the
checkout: a test being written need not be in ``mutants/``); ``MUTANT`` a name as `mutmut results` or
``tools/mutation_score.py --survivors`` print it, or a pattern with ``*``. The tests run once with no mutant (they
must pass) and then once per mutant, each in a process forked from one that imported the libraries of
``tools/mutmut_preload.txt`` and the mutated package from ``mutants/`` (as `make mutate` does); a mutant is
*killed* when a test fails. Nothing in ``mutants/`` changes: the next `make mutate` records the results.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mutant_names(patterns: list[str]) -> list[str]:
    """The names of ``mutants/**/*.meta`` matching each pattern; ``ValueError`` for a pattern that matches none (a
    misspelt name would never be switched on, and would read as a survivor)."""
    known = [n for f in (ROOT / "mutants").rglob("*.meta") for n in json.loads(f.read_text())["exit_code_by_key"]]
    names: list[str] = []
    for p in patterns:
        found = sorted(fnmatch.filter(known, p))
        if not found:
            raise ValueError(f"no mutant of the last `make mutate` is named {p!r} (list them: mutmut results)")
        names += found
    return names


def run(tests: list[str], mutant: str) -> int:
    """pytest's exit code for ``tests`` with ``mutant`` active, in a forked child (its output discarded)."""
    from mutmut.mutation.trampoline import set_mutant_under_test

    pid = os.fork()
    if pid == 0:
        import pytest

        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the child exits right after)
        set_mutant_under_test(mutant)
        args = ["-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:unraisableexception"]
        os._exit(int(pytest.main([*args, *tests])))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == 0 or argv[-1] == "--":
        print(__doc__, file=sys.stderr)
        return 2
    cut = argv.index("--")
    tests = [str(Path(t).resolve()) if Path(t.split("::")[0]).exists() else t for t in argv[:cut]]
    if not (ROOT / "mutants").is_dir():
        print("no mutants/ here: run `make mutate` first (from the repository root)", file=sys.stderr)
        return 2
    try:
        names = mutant_names(argv[cut + 1 :])
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    os.chdir(ROOT / "mutants")
    sys.path.insert(0, os.getcwd())  # the mutated package, before the checkout's
    for line in (ROOT / "tools" / "mutmut_preload.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            importlib.import_module(line.strip())
    base = run(tests, "no mutant")
    print("baseline (no mutant): " + ("passes" if base == 0 else f"FAILS (pytest exit {base}): fix the tests first"))
    if base != 0:
        return 1
    survived = 0
    for name in names:
        code = run(tests, name)
        survived += code == 0
        print(f"{'killed  ' if code else 'SURVIVED'} {name} (pytest exit {code})", flush=True)
    print(f"{len(names) - survived} of {len(names)} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
