"""The docs' examples run as written.

Every fenced ``python`` block of README.md and docs/*.md is executed, in order, in one fresh namespace per
file (a later block may use the names of an earlier one). A block right after an HTML comment
``<!-- skip-test -->`` is not run: keep that for commands that need a GPU.

The blocks are this repository's own documentation, not untrusted text, which is why ``exec`` is fine here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
# Pages that must show at least one executed example.
MUST_RUN = ("README.md", "docs/index.md", "docs/rhythm.md")
SKIP_MARK = "<!-- skip-test -->"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    source: str
    skipped: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def _dedent(line: str, indent: str) -> str:
    return line[len(indent) :] if line.startswith(indent) else line.lstrip()


def python_blocks(path: Path) -> list[Block]:
    """The fenced python blocks of a Markdown file, with their skip flags."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    previous = ""  # last non-blank line outside a fence
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip().split()
        language = info[0].lower().lstrip("{.").rstrip("}") if info else ""
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and lines[i].strip(fence[0] + " \t") == ""):
            body.append(_dedent(lines[i], indent))
            i += 1
        i += 1  # closing fence
        if language in ("python", "py"):
            blocks.append(Block(path, start + 1, "\n".join(body) + "\n", previous == SKIP_MARK))
        previous = ""
    return blocks


def _file_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# docs/monitor.md shows RhythmReport's one warning under a CSVLogger on purpose (the text after the example explains it)
@pytest.mark.filterwarnings("ignore:RhythmReport. the logger.s. CSVLogger cannot show images:UserWarning")
@pytest.mark.parametrize("path", [p for p in DOC_FILES if python_blocks(p)], ids=_file_id)
def test_doc_examples_run(path: Path, tmp_path, monkeypatch):
    blocks = [b for b in python_blocks(path) if not b.skipped]
    if not blocks:
        pytest.skip(f"every python block of {_file_id(path)} is marked {SKIP_MARK}")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch.manual_seed(0)
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for block in blocks:
        # Leading newlines make traceback line numbers those of the Markdown file.
        code = compile("\n" * block.line + block.source, str(block.path), "exec")
        try:
            exec(code, namespace)  # noqa: S102 - the repository's own docs, see the module docstring
        except Exception as err:
            raise AssertionError(f"the python block at {block.name} failed: {type(err).__name__}: {err}") from err


@pytest.mark.parametrize("name", MUST_RUN)
def test_page_has_executed_example(name: str):
    path = ROOT / name
    assert path.is_file(), f"{name} is missing"
    runnable = [b for b in python_blocks(path) if not b.skipped]
    assert runnable, f"{name} has no executed ```python block: add a runnable example (not marked {SKIP_MARK})"


def test_block_parser(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Intro\n\n```python\nx = 1\n```\n\n<!-- skip-test -->\n```python\nraise SystemExit\n```\n\n"
        "- item\n\n    ```python\n    y = x + 1\n    ```\n\n```bash\nmake test\n```\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.source, b.skipped) for b in blocks] == [
        ("x = 1\n", False),
        ("raise SystemExit\n", True),
        ("y = x + 1\n", False),
    ]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_fences_in_lists_are_indented_as_the_site_needs(path: Path):
    """Python-Markdown (the docs site) keeps a code fence inside a list item only when it is indented by 4 spaces:
    with 1 to 3 the item ends at the fence and the rest of the list folds into one paragraph after it (GitHub
    renders both, so the page looks right there)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = [n for n, line in enumerate(lines, 1) if re.match(r" {1,3}```", line)]
    assert not bad, f"{path.name}: a fence indented by 1-3 spaces on line(s) {bad}: indent list content by 4"
    # after a list item that holds a block, the next item needs a blank line, or it joins the item's last paragraph
    in_block_item, joined = False, []
    for n, line in enumerate(lines, 1):
        if line.startswith("    ```"):
            in_block_item = True
        elif re.match(r"[-*] |\d+\. ", line):
            if in_block_item and lines[n - 2].strip():
                joined.append(n)
            in_block_item = False
        elif line and not line.startswith(" "):
            in_block_item = False
    assert not joined, f"{path.name}: list item(s) on line(s) {joined} join the item above: put a blank line before"
