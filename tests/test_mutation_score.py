"""tools/mutation_score.py (what `make mutate` prints) on hand-made mutmut results."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutation_score", ROOT / "tools" / "mutation_score.py")
mutation_score = sys.modules["mutation_score"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(mutation_score)


def write_meta(mutants: Path, source: str, exit_codes: dict) -> None:
    meta = mutants / f"{source}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"exit_code_by_key": exit_codes, "durations_by_key": {}}), encoding="utf-8")


def test_scores_per_module_and_total(tmp_path, capsys):
    # a.py: 3 killed, 1 timeout, 1 survived, 1 without tests -> 4 / 6; b.py: 1 killed, 1 skipped, 1 not run -> 1 / 1
    codes_a = {"pkg.a.x_f__mutmut_1": 1, "pkg.a.x_f__mutmut_2": 1, "pkg.a.x_f__mutmut_3": 3, "pkg.a.x_g__mutmut_1": 36}
    codes_a |= {"pkg.a.x_g__mutmut_2": 0, "pkg.a.x_h__mutmut_1": 33}
    write_meta(tmp_path, "pkg/a.py", codes_a)
    write_meta(tmp_path, "pkg/b.py", {"pkg.b.x_f__mutmut_1": 1, "pkg.b.x_f__mutmut_2": 34, "pkg.b.x_f__mutmut_3": None})
    # c.py: 1 killed, 1 whose test run raised (mutmut's 255, which it calls a timeout): not caught -> 1 / 2
    write_meta(tmp_path, "pkg/c.py", {"pkg.c.x_f__mutmut_1": 1, "pkg.c.x_f__mutmut_2": 255})
    # d.py: a mutant that breaks the tests' collection (pytest's 2) is caught -> 1 / 1
    write_meta(tmp_path, "pkg/d.py", {"pkg.d.x_f__mutmut_1": 2})
    write_meta(tmp_path, "pkg/__init__.py", {})  # no mutants: no row

    scores = mutation_score.module_scores(tmp_path)
    assert [s.module for s in scores] == ["pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/d.py"]
    assert scores[0].score == pytest.approx(100 * 4 / 6)
    assert scores[1].score == 100.0 and scores[2].score == 50.0 and scores[3].score == 100.0
    whole = mutation_score.total(scores)
    assert (whole.caught, whole.counted, whole.not_run, whole.skipped) == (7, 10, 1, 1)
    assert whole.missed == {"survived": ["pkg.a.x_g__mutmut_2"], "no tests": ["pkg.a.x_h__mutmut_1"], "suspicious": [],
                            "run error": ["pkg.c.x_f__mutmut_2"]}  # fmt: skip

    assert mutation_score.main(["--mutants", str(tmp_path), "--survivors"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["survived: pkg.a.x_g__mutmut_2", "no tests: pkg.a.x_h__mutmut_1"]
    rows = {line.split()[0]: line.split()[1:] for line in out if line.startswith(("pkg/", "total"))}
    # mutants, killed, timeout, survived, no tests, other, not run, score
    assert rows["pkg/a.py"] == ["6", "3", "1", "1", "1", "0", "0", "66.7%"]
    assert rows["pkg/b.py"] == ["3", "1", "0", "0", "0", "0", "1", "100.0%"]
    assert rows["pkg/c.py"] == ["2", "1", "0", "0", "0", "1", "0", "50.0%"]
    assert rows["pkg/d.py"] == ["1", "1", "0", "0", "0", "0", "0", "100.0%"]
    assert rows["total"] == ["12", "6", "1", "1", "1", "1", "1", "70.0%"]
    assert list(rows)[-1] == "total" and "1 mutants not run yet" in out[-2]
    assert out[-1].startswith("1 mutants were run errors") and "pytest --co -q" in out[-1]


def test_no_run_error_no_hint(tmp_path, capsys):
    write_meta(tmp_path, "pkg/a.py", {"pkg.a.x_f__mutmut_1": 1, "pkg.a.x_f__mutmut_2": 0})
    assert mutation_score.main(["--mutants", str(tmp_path)]) == 0
    assert "run errors" not in capsys.readouterr().out


def test_no_results_is_an_error_that_says_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        mutation_score.main(["--mutants", str(tmp_path / "missing")])
    assert "no such folder: run `make mutate`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mutation_score.main(["--mutants", str(tmp_path)])
    assert "no mutmut results (*.py.meta) in it" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ tools/kill_check.py

_kspec = importlib.util.spec_from_file_location("kill_check", ROOT / "tools" / "kill_check.py")
kill_check = importlib.util.module_from_spec(_kspec)
_kspec.loader.exec_module(kill_check)


def test_kill_check_expands_patterns_over_the_recorded_mutants(tmp_path, monkeypatch):
    write_meta(tmp_path / "mutants", "pkg/a.py", {"pkg.a.x_f__mutmut_1": 1, "pkg.a.x_f__mutmut_2": 0})
    write_meta(tmp_path / "mutants", "pkg/b.py", {"pkg.b.x_f__mutmut_1": 0})
    monkeypatch.setattr(kill_check, "ROOT", tmp_path)
    assert kill_check.mutant_names(["pkg.a.*"]) == ["pkg.a.x_f__mutmut_1", "pkg.a.x_f__mutmut_2"]
    assert kill_check.mutant_names(["*mutmut_1", "pkg.a.x_f__mutmut_2"]) == [
        "pkg.a.x_f__mutmut_1",
        "pkg.b.x_f__mutmut_1",
        "pkg.a.x_f__mutmut_2",
    ]
    with pytest.raises(ValueError, match="no mutant of the last `make mutate` is named 'pkg.a.x_f__mutmut_3'"):
        kill_check.mutant_names(["pkg.a.x_f__mutmut_3"])  # a misspelt name would read as a survivor


@pytest.mark.parametrize("argv", [[], ["tests/x.py"], ["--", "m"], ["tests/x.py", "--"]])
def test_kill_check_without_tests_or_mutants_prints_its_usage(argv, capsys):
    assert kill_check.main(argv) == 2
    assert "python tools/kill_check.py TEST" in capsys.readouterr().err


def test_kill_check_before_make_mutate_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kill_check, "ROOT", tmp_path)
    assert kill_check.main(["tests/x.py", "--", "m"]) == 2
    assert "run `make mutate` first" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the published score


def test_the_published_survivors_are_the_ones_the_table_counts():
    """docs/testing.md's table, its classes and tests/mutation/SURVIVORS.md describe one run: the survivors listed
    one by one are those the table counts, module by module, and the class counts of the page are theirs."""
    import re
    from collections import Counter

    page = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    table = page.split("## Mutation score", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    survived = {
        line.split()[0]: int(line.split()[4]) for line in table.splitlines() if line.startswith("lightning_reasonattn/")
    }
    listing = (ROOT / "tests" / "mutation" / "SURVIVORS.md").read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in listing.split("```text", 1)[1].split("```", 1)[0].strip().splitlines()]
    per_module = Counter("lightning_reasonattn/" + name.split(".x")[0].replace(".", "/") + ".py" for name, *_ in rows)
    assert {m: n for m, n in survived.items() if n} == dict(per_module)
    total_row = next(line for line in table.splitlines() if line.startswith("total"))
    assert int(total_row.split()[4]) == len(rows) == sum(survived.values())
    classes = Counter(cls for _, cls, _ in rows)
    stated = {
        name: int(n)
        for name, n in re.findall(r"- \*\*(The same value|Memory only|Precision|Device)[^(]*\((\d+)\)\.\*\*", page)
    }
    assert stated == {
        "The same value": classes["same value"],
        "Memory only": classes["memory only"],
        "Precision": classes["precision"],
        "Device": classes["device"],
    }
