"""One escaper for model output: the terminal table of ``analyze``, the report page, its figures and the survey page
show a hostile token the same way (written out here by hand, not from the code)."""

from __future__ import annotations

import pytest

from lightning_reasonattn import analysis
from lightning_reasonattn.report import escape, figures, page

HOSTILE = "a\n\tb\r\x1b[31m\u202e\u200b\U000e0001 c\\d"
ONE_LINE = "a\\n\\tb\\r\\x1b[31m\\u202e\\u200b\\U000e0001 c\\d"  # a backslash typed in the text stays one


def test_one_line_printable_and_the_terminal_table():
    assert escape.one_line(HOSTILE) == ONE_LINE
    assert escape.printable(HOSTILE) == "a\n\tb\\r\\x1b[31m\\u202e\\u200b\\U000e0001 c\\d"
    assert analysis.escape_token(HOSTILE, width=100) == ONE_LINE.replace("c\\d", "c\\\\d")
    assert analysis.escape_token("\U000e0001") == "\\U000e0001"  # (not \\ue0001, as a hand-made escape gave)


def test_the_page_and_the_figures_show_the_same_escape():
    assert figures._label(HOSTILE, width=100) == ONE_LINE
    assert figures._label(HOSTILE, width=8) == ONE_LINE[:7] + "…"
    cell = page._visible("\x1b[31m")
    assert cell == '<span class="ctl">\\x1b</span>[31m'


@pytest.mark.parametrize("ch", ["\x00", "\x7f", "\x85", "\u2028", "\ufeff"])
def test_every_control_character_is_written_as_python_writes_it(ch):
    assert escape.one_line(ch) == repr(ch)[1:-1] and len(escape.one_line(ch)) > 1
