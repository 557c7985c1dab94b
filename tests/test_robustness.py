"""The bad-input count: every area's enumerated bad inputs, totalled, and the table in docs/troubleshooting.md.

Each area's test module enumerates the bad inputs it tries in a module-level ``BAD_INPUTS`` list, built from the
same lists that parametrize its tests, so an input is in the count exactly when a test tries it. A case is one
bad call at one entry point: the same wrong value given to a settings class in Python and on the ``fit`` command
line is two cases (two code paths, two kinds of error), listed once each. "Handled cleanly" equals "tried"
because each of those tests passes only when its input is handled cleanly (see the docs' section).
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest
from conftest import BadInput

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "troubleshooting.md"
AREAS = (
    "test_hostile_rewards",
    "test_hostile_capture",
    "test_grpo_cli",
    "test_cli",
    "test_survey",
    "test_hostile_files",
    "test_odd_trainers",
    "test_hostile_plain_models",
    "test_hostile_runs",
)


def name_of(case) -> str:
    return case if isinstance(case, str) else case.name


def bad_inputs(area: str) -> list:
    return list(importlib.import_module(area).BAD_INPUTS)


def documented_counts() -> dict[str, tuple[int, int]]:
    """``{module or "total": (tried, handled cleanly)}`` from the table of the docs' Robustness section."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Robustness") :]
    counts = {}
    for row in re.findall(r"^\|(.+)\|\s*$", section, flags=re.M):
        cells = [cell.strip() for cell in row.split("|")]
        module = re.search(r"`(test_\w+)\.py`", cells[0])
        key = module[1] if module else "total" if cells[0].strip("*").lower() == "total" else None
        if key is not None:
            counts[key] = (int(cells[1].strip("*")), int(cells[2].strip("*")))
    return counts


@pytest.mark.parametrize("area", AREAS)
def test_each_area_lists_each_case_once(area):
    cases = bad_inputs(area)
    names = [name_of(case) for case in cases]
    assert len(cases) >= 5
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


@pytest.mark.parametrize("area", [a for a in AREAS if any(isinstance(c, BadInput) for c in bad_inputs(a))])
def test_each_case_names_a_test_of_its_module(area):
    module = importlib.import_module(area)
    for case in module.BAD_INPUTS:
        test = getattr(module, case.test, None)
        assert case.test.startswith("test_") and inspect.isfunction(test), (area, case)


def test_no_case_is_counted_in_two_areas():
    seen: dict[str, str] = {}
    for area in AREAS:
        for name in map(name_of, bad_inputs(area)):
            assert name not in seen, f"{name!r} is in {seen[name]} and {area}"
            seen[name] = area


def test_the_docs_table_states_the_enumerated_counts():
    counts = {area: len(bad_inputs(area)) for area in AREAS}
    documented = documented_counts()
    assert set(documented) == {*AREAS, "total"}, documented
    for area, tried in counts.items():
        assert documented[area] == (tried, tried), (area, documented[area], tried)
    total = sum(counts.values())
    assert documented["total"] == (total, total)


def test_the_table_reader_sees_a_wrong_number(tmp_path, monkeypatch):
    text = DOC.read_text(encoding="utf-8")
    tried = len(bad_inputs("test_hostile_capture"))
    row = re.search(rf"^\|[^|\n]*`test_hostile_capture\.py`[^|\n]*\|\s*{tried}\s*\|", text, flags=re.M)
    assert row, "no table row for test_hostile_capture.py"
    planted = tmp_path / "troubleshooting.md"
    planted.write_text(text.replace(row[0], row[0].replace(f"| {tried} |", f"| {tried + 1} |")), encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "DOC", planted)
    assert documented_counts()["test_hostile_capture"][0] == tried + 1
