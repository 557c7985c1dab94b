"""`make test`'s docs build fails on any docs warning.

The docs command is read from the Makefile with ``make -n`` (printed, not run: nothing is installed) and run on a
tiny site in a temporary folder that uses this project's ``validation`` settings, once clean and once with each
kind of warning planted: a griffe docstring warning (a grouped parameter), a link to a missing page, a link to a
missing anchor (an INFO message unless mkdocs.yml promotes it).
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

CLEAN_MODULE = '''
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b
'''

PAGES = {"index.md": "# Home\n\nSee [the API](api.md#mod.add).\n\n## Section\n", "api.md": "# API\n\n::: mod.add\n"}

PLANTS = {
    "griffe grouped parameter": ("mod.py", "a: the first.\n        b: the second.", "a, b: the two numbers."),
    "missing page": ("docs/index.md", "(api.md#mod.add)", "(nowhere.md)"),
    "missing anchor": ("docs/index.md", "(api.md#mod.add)", "(index.md#no-such-heading)"),
}


def docs_command() -> list[str]:
    """The mkdocs command of `make test`, as make would run it with this interpreter's environment."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed: `make test` cannot run here either")
    venv = Path(sys.executable).parent.parent
    printed = subprocess.run(
        [make, "-n", "-o", str(venv / ".reasonattn-installed"), f"VENV={venv}", "test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in printed.splitlines() if "mkdocs build" in line]
    assert len(lines) == 1, printed
    return shlex.split(lines[0])


def tiny_site(path: Path, plant: str | None = None) -> Path:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    site = {
        "site_name": "tiny",
        "nav": ["index.md", "api.md"],
        "validation": config.get("validation", {}),
        "plugins": [{"mkdocstrings": {"handlers": {"python": {"paths": ["."]}}}}],
    }
    (path / "docs").mkdir(parents=True)
    (path / "mkdocs.yml").write_text(yaml.safe_dump(site), encoding="utf-8")
    (path / "mod.py").write_text(CLEAN_MODULE, encoding="utf-8")
    for name, text in PAGES.items():
        (path / "docs" / name).write_text(text, encoding="utf-8")
    if plant is not None:
        file, old, new = PLANTS[plant]
        text = (path / file).read_text(encoding="utf-8")
        assert old in text
        (path / file).write_text(text.replace(old, new), encoding="utf-8")
    return path


def build(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(path)}
    return subprocess.run(docs_command(), cwd=path, env=env, capture_output=True, text=True, timeout=300)


def test_the_docs_command_is_strict_and_not_quiet():
    command = docs_command()
    assert "--strict" in command and "--quiet" not in command and "-q" not in command


def test_a_clean_site_builds(tmp_path):
    result = build(tiny_site(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_any_docs_warning_fails_the_build(tmp_path, plant):
    result = build(tiny_site(tmp_path, plant))
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "WARNING" in log  # shown, so the reader sees what to fix


# Docstrings use mkdocstrings cross-references (``[`name`][dotted.path]``); a Sphinx role such as ``:func:`x``` is
# shown raw on the API page and in help().
RAW_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):`")
CROSS_REF = re.compile(r"\[`[^`\]]+`\]\[(lightning_reasonattn(?:\.\w+)+)\]")
PACKAGE_FILES = sorted((ROOT / "lightning_reasonattn").rglob("*.py"))


def raw_roles(text: str) -> list[int]:
    """1-based lines of ``text`` that hold a Sphinx role."""
    return [number for number, line in enumerate(text.splitlines(), 1) if RAW_ROLE.search(line)]


def test_raw_role_scan_finds_a_role():
    text = '"""Docs.\n\n    See :func:`~lightning_reasonattn.capture_rhythm` and [`waad`][waad].\n"""\n'
    assert raw_roles(text) == [3]
    assert raw_roles(text.replace(":func:`~lightning_reasonattn.capture_rhythm`", "``capture_rhythm``")) == []


def test_package_has_no_raw_sphinx_roles():
    found = [
        f"{path.relative_to(ROOT).as_posix()}:{line}"
        for path in PACKAGE_FILES
        for line in raw_roles(path.read_text(encoding="utf-8"))
    ]
    assert not found, f"Sphinx roles left (write [`name`][dotted.path] instead): {found}"


def test_full_path_cross_references_name_real_objects():
    """A dotted target must exist: docstrings of modules not on the API page are never checked by the build."""
    targets = {t for path in PACKAGE_FILES for t in CROSS_REF.findall(path.read_text(encoding="utf-8"))}
    assert len(targets) > 10
    missing = []
    for target in sorted(targets):
        parts = target.split(".")
        for split in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            try:
                for name in parts[split:]:
                    obj = getattr(obj, name)
            except AttributeError:
                missing.append(target)
            break
        else:
            missing.append(target)
    assert not missing, missing


API_PAGE = ROOT / "docs" / "api.md"
# Modules the API page leaves out: command-line handlers, internals behind the capture, test helpers.
NOT_ON_THE_API_PAGE = {
    "lightning_reasonattn.arguments": "argument types of the reasonattn commands",
    "lightning_reasonattn.callbacks": "a package whose names are rendered from their modules",
    "lightning_reasonattn.capture": "a package whose names are rendered from their modules",
    "lightning_reasonattn.capture.blockwise": "the capture's internals, behind capture_rhythm",
    "lightning_reasonattn.capture.eager": "the capture's internals, behind capture_rhythm",
    "lightning_reasonattn.capture.hf_attention": "the capture's internals, behind capture_rhythm",
    "lightning_reasonattn.capture.route": "the capture's internals, behind capture_rhythm",
    "lightning_reasonattn.cli": "the reasonattn command",
    "lightning_reasonattn.grpo": "a package whose names are rendered from their modules",
    "lightning_reasonattn.grpo.cli": "the fit / validate / export commands",
    "lightning_reasonattn.grpo.data": "RhythmGRPO's data plumbing",
    "lightning_reasonattn.rollout": "a package whose names are rendered from their modules",
    "lightning_reasonattn.survey": "a package whose names are rendered from their modules",
    "lightning_reasonattn.survey.command": "the survey command",
    "lightning_reasonattn.testing": "tiny models for tests and docs examples",
}


def api_page_modules() -> list[str]:
    return re.findall(r"^::: (\S+)", API_PAGE.read_text(encoding="utf-8"), flags=re.M)


def test_every_public_module_is_on_the_api_page_once():
    import pkgutil

    import lightning_reasonattn

    rendered = api_page_modules()
    assert len(rendered) == len(set(rendered)), rendered
    for info in pkgutil.walk_packages(lightning_reasonattn.__path__, "lightning_reasonattn."):
        name = info.name
        if name in NOT_ON_THE_API_PAGE or any(part.startswith("_") for part in name.split(".")):
            continue
        package = name.rsplit(".", 1)[0]  # functional.* and tasks.*: their package re-exports the public names
        assert name in rendered or package in rendered, f"{name} is not on docs/api.md"


def test_rewards_page_lists_what_is_not_rendered_elsewhere():
    """rewards re-exports the protocol, completions and answer parsing; the page shows each once, in its module."""
    griffe = pytest.importorskip("griffe")  # what mkdocstrings reads the package with

    rewards = griffe.load("lightning_reasonattn", search_paths=[str(ROOT)])["rewards"]
    homes = tuple(f"lightning_reasonattn.rewards.{name}" for name in ("protocol", "completions", "answers"))
    elsewhere = {name for name in rewards.exports if rewards[name].canonical_path.rsplit(".", 1)[0] in homes}
    text = API_PAGE.read_text(encoding="utf-8")
    block = text[text.index("::: lightning_reasonattn.rewards\n") :].split("\n\n")[0]
    listed = re.findall(r"^\s+- (\w+)$", block, flags=re.M)
    assert set(homes) <= set(api_page_modules())
    assert len(elsewhere) > 10 and sorted(listed) == sorted(set(rewards.exports) - elsewhere)
