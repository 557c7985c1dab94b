"""Model output is shown, never interpreted: the one escaper of every place that shows a token or a response (the
terminal table of ``reasonattn analyze``, the report page and its figures, the survey page).

A character that is not printable is written as Python writes it in a string literal: ``\\n``, ``\\t``, ``\\r``,
``\\x1b``, ``\\u200b``, ``\\U000e0001``; so an escape sequence of a terminal, a right-to-left override or a zero-width
character shows as text. HTML and Markdown escaping come after, where the text goes into a page.

Example:
    >>> one_line("a\\nb\\x1b[31m")
    'a\\\\nb\\\\x1b[31m'
    >>> printable("two\\nlines\\x07")
    'two\\nlines\\\\x07'
    >>> shorten(escape("tab\\there\\\\", backslash=True), 10)
    'tab\\\\the...'
"""

from __future__ import annotations


def escape_char(ch: str) -> str:
    """``ch`` itself if printable, else its escape (``\\n``, ``\\x1b``, ``\\u200b``...)."""
    return ch if ch.isprintable() else repr(ch)[1:-1]


def escape(text: str, *, keep: str = "", backslash: bool = False) -> str:
    """``text`` with every character that is not printable escaped, except those of ``keep``; with ``backslash``, a
    backslash is doubled too, so that an escape and the same characters typed out cannot be told apart."""
    return "".join(ch if ch in keep else "\\\\" if backslash and ch == "\\" else escape_char(ch) for ch in text)


def one_line(text: str) -> str:
    """A token or a response on one line (a table cell, a tooltip, a plot label): newlines and every other
    character that is not printable escaped."""
    return escape(text)


def printable(text: str) -> str:
    """Text for a terminal: newlines and tabs kept, every other character that is not printable (escape sequences
    too) escaped."""
    return escape(text, keep="\n\t")


def shorten(text: str, width: int, ellipsis: str = "...") -> str:
    """``text`` cut to at most ``width`` characters, ending with ``ellipsis`` where it was cut."""
    return text if len(text) <= width else text[: width - len(ellipsis)] + ellipsis
