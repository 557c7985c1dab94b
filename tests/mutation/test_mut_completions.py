"""Tests written against the surviving mutants of ``rewards/completions.py``: how TRL's messages read back as text,
and the exact bounds past which a completion reads as no text."""

import pytest

from lightning_reasonattn.rewards.completions import (
    MAX_COMPLETION_CHARS,
    MAX_COMPLETION_PARTS,
    completion_text,
    conversational_completions,
)


def test_messages_without_content_read_as_empty_lines():
    """A ``None`` message, or a message whose content is ``None``, is an empty line, not an error or a placeholder."""
    assert completion_text(["a", None, "b"]) == "a\n\nb"
    assert completion_text([{"role": "assistant", "content": None}, "x"]) == "\nx"


def test_exactly_max_completion_parts_messages_are_read():
    """MAX_COMPLETION_PARTS messages are read whole; one more and the completion reads as no text."""
    assert completion_text(["a"] * MAX_COMPLETION_PARTS) == "\n".join(["a"] * MAX_COMPLETION_PARTS)
    assert completion_text(["a"] * (MAX_COMPLETION_PARTS + 1)) == ""


def test_reading_stops_only_once_the_text_has_passed_max_completion_chars():
    """Text and newlines of exactly MAX_COMPLETION_CHARS characters before a message do not stop the reading
    (one newline counts one character); one character more does."""
    first = "a" * (MAX_COMPLETION_CHARS - 1)  # with its newline: exactly MAX_COMPLETION_CHARS
    assert completion_text([first, "b"]) == first + "\nb"
    assert completion_text([first + "a", "b"]) == ""


def test_a_bad_assistant_prefix_is_named_as_a_message_content():
    """The prefix of a continued assistant message is checked as any content: the error says what it is."""
    with pytest.raises(TypeError, match="^a message content is a string or a list of parts, not int"):
        conversational_completions([[{"role": "assistant", "content": 5}]], ["x"])


def test_an_assistant_prefix_past_the_bounds_reads_as_no_text():
    """A prefix of more than MAX_COMPLETION_PARTS parts is no text: the completion is the generated text alone."""
    prefix = {"role": "assistant", "content": ["a"] * (MAX_COMPLETION_PARTS + 1)}
    prompts, completions = conversational_completions([[{"role": "user", "content": "q"}, prefix]], ["x"])
    assert prompts == [[{"role": "user", "content": "q"}]]
    assert completions == [[{"role": "assistant", "content": "x"}]]
