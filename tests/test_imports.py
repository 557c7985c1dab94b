"""Lean imports: the pure math, the package, the settings and the command line's parser load no Lightning,
transformers or matplotlib (they take seconds to import), nor even torch until a function needs it; the public names
still come from ``lightning_reasonattn`` and ``lightning_reasonattn.functional`` on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_reasonattn
from lightning_reasonattn import functional

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "lightning", "transformers", "matplotlib", "torchmetrics", "peft", "bitsandbytes")


def loaded_after(code: str) -> list[str]:
    """The heavy packages imported by a fresh interpreter that runs ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", probe]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "import lightning_reasonattn.functional",
        "import lightning_reasonattn",
        "import lightning_reasonattn.settings",
        "from lightning_reasonattn.cli import build_parser; build_parser()",  # what `reasonattn --help` runs
    ],
)
def test_lean_imports_load_no_heavy_package(code):
    assert loaded_after(code) == []


def test_the_math_loads_torch_only():
    assert loaded_after("from lightning_reasonattn.functional import waad, RhythmTrace") == ["torch"]


def test_subpackages_are_attributes_as_before():  # `import lightning_reasonattn as lr; lr.functional.waad(...)`
    code = "import lightning_reasonattn as lr\nlr.functional.coupling.within, lr.functional.waad, lr.survey.run_survey"
    assert "torch" in loaded_after(code)


def test_the_probe_sees_a_heavy_import():  # the test above can fail: importing a metric loads torchmetrics
    assert "torchmetrics" in loaded_after("from lightning_reasonattn import RhythmCoupling")


@pytest.mark.parametrize("package", [lightning_reasonattn, functional])
def test_every_public_name_resolves_and_is_listed(package):
    names = set(package.__all__) - {"__version__"}
    assert names == set(package._HOME)
    for name in names:
        value = getattr(package, name)
        assert getattr(value, "__name__", name) == name  # (constants have no name)
        assert name in dir(package)
    with pytest.raises(AttributeError, match="no attribute 'RhythmSetting'"):
        package.RhythmSetting  # noqa: B018
