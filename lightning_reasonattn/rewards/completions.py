"""The completions a reward function receives: plain text or TRL's conversational messages, read safely.

A completion is a string when its prompt is a string, and ``[{"role": "assistant", "content": text}]`` when the
prompt is a list of messages ([`conversational_completions`][conversational_completions] builds them as TRL does);
[`completion_text`][completion_text] reads either back, refusing any other type with the place and the type named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..files import brief_repr

MAX_COMPLETION_CHARS = 1_000_000
"""A completion's text past this many characters (some 250,000 tokens) is too long to be one answer:
``format_reward`` scores it 0.0, and [`completion_text`][completion_text] stops reading messages there."""
MAX_COMPLETION_PARTS = 10_000
"""[`completion_text`][completion_text] reads at most this many messages and content parts of one completion."""


class _Overflow(Exception):
    """A list of messages or parts past ``MAX_COMPLETION_PARTS`` items or ``MAX_COMPLETION_CHARS`` characters."""


def completion_text(completion: Any) -> str:
    """The text of one completion, plain or in TRL's conversational format.

    Reading is bounded whatever the completion holds: a list of messages is read up to
    [`MAX_COMPLETION_PARTS`][MAX_COMPLETION_PARTS] messages and content parts in all, and stops once its text has
    passed [`MAX_COMPLETION_CHARS`][MAX_COMPLETION_CHARS] characters. A completion with more than that (a million
    messages; 10,000 references to one string of a million characters, 10 GB once joined) is too long to be one
    answer: it reads as no text, ``""``, which every built-in reward scores 0.0. A single string, or a single
    message or part however long, is read whole (the rewards bound what they scan of it). A ``str`` subclass is
    read as its characters (a plain ``str``), none of its methods called.

    Args:
        completion: a string; a list of ``{"role", "content"}`` messages (their contents are joined with
            newlines; a content may itself be a list of ``{"type": "text", "text": ...}`` parts, of which the text
            ones count); a single message dict; or ``None`` (an empty completion).

    Returns:
        The text (a plain ``str``), ``""`` for ``None`` and for a list of messages past the bounds above.

    Raises:
        TypeError: any other type, at any level (bytes, a number, a list of lists, a text part that is not a string),
            however deeply it nests; the message names where it is and the type received (its ``repr`` cut short).

    Example:
        >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "42"}]}])
        '42'
        >>> completion_text(b"42")
        Traceback (most recent call last):
        ...
        TypeError: a completion is text or a list of {'role', 'content'} messages, not bytes (b'42'): decode it first
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return _plain(completion)
    budget = _Budget()
    try:
        if isinstance(completion, Mapping):
            return _content_text(completion.get("content"), "the message's content", budget)
        if isinstance(completion, Sequence) and not isinstance(completion, _BYTES):
            texts = []
            for i, message in enumerate(completion):
                budget.item()
                if isinstance(message, Mapping):
                    texts.append(_content_text(message.get("content"), f"message {i}'s content", budget))
                elif message is None or isinstance(message, str):
                    texts.append("" if message is None else _plain(message))
                    budget.read(len(texts[-1]))
                else:
                    raise TypeError(f"message {i} is {_received(message)}, not a {{'role', 'content'}} message")
                budget.read(1)  # the newline
            return "\n".join(texts)
    except _Overflow:
        return ""
    raise TypeError(f"a completion is text or a list of {{'role', 'content'}} messages, not {_received(completion)}")


def _plain(text: str) -> str:
    """``text`` as a plain ``str``: ``str.__str__`` copies a subclass's characters without calling its methods."""
    return str.__str__(text)


class _Budget:
    """What one completion may still read: ``item()`` before each message or part, ``read(n)`` after its text."""

    def __init__(self) -> None:
        self.parts, self.chars = 0, 0

    def item(self) -> None:
        if self.parts >= MAX_COMPLETION_PARTS or self.chars > MAX_COMPLETION_CHARS:
            raise _Overflow
        self.parts += 1

    def read(self, chars: int) -> None:
        self.chars += chars


_BYTES = (bytes, bytearray, memoryview)


def _received(value: Any) -> str:
    """``"bytes (b'42'): decode it first"``: the type received, the value, and the fix for bytes."""
    text = f"{type(value).__name__} ({brief_repr(value if not isinstance(value, memoryview) else value.tobytes())})"
    return text + (": decode it first" if isinstance(value, _BYTES) else "")


def _content_text(content: Any, what: str = "a message content", budget: _Budget | None = None) -> str:
    """The text of one message's content; ``""`` past the bounds of ``budget`` (its own when ``None``)."""
    if budget is None:
        try:
            return _content_text(content, what, _Budget())
        except _Overflow:
            return ""
    if content is None:
        return ""
    if isinstance(content, str):
        text = _plain(content)
        budget.read(len(text))
        return text
    if not isinstance(content, Sequence) or isinstance(content, _BYTES):
        raise TypeError(f"{what} is a string or a list of parts, not {_received(content)}")
    texts = []
    for j, part in enumerate(content):  # multimodal parts: the text ones count
        budget.item()
        if isinstance(part, str):
            texts.append(_plain(part))
        elif isinstance(part, Mapping):
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                raise TypeError(f"{what}, part {j}: its text is {_received(text)}, not a string")
            texts.append("" if text is None else _plain(text))
        else:
            raise TypeError(f"{what}, part {j} is {_received(part)}, not a {{'type': 'text', 'text': ...}} part")
        budget.read(len(texts[-1]))
    return "".join(texts)


def conversational_completions(prompts: Sequence[Any], texts: Sequence[str]) -> tuple[list, list]:
    """TRL's ``(prompts, completions)`` for reward functions, from the prompts and the decoded completions.

    A string prompt keeps its completion a string. A prompt that is a list of messages gets the completion
    ``[{"role": "assistant", "content": text}]``; when that prompt ends with an assistant message (a prefix
    the model continued), the prefix moves into the completion's content and out of the prompt, as in TRL.

    Args:
        prompts: ``[n]`` prompts (strings or lists of ``{"role", "content"}`` messages); not modified.
        texts: ``[n]`` decoded completions.

    Returns:
        ``(prompts, completions)``, new lists.

    Example:
        >>> conversational_completions(["2+2?"], ["4"])
        (['2+2?'], ['4'])
        >>> user, prefix = {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>"}
        >>> conversational_completions([[user, prefix]], ["easy</think>4"])
        ([[{'role': 'user', 'content': '2+2?'}]], [[{'role': 'assistant', 'content': '<think>easy</think>4'}]])
    """
    if len(prompts) != len(texts):
        raise ValueError(f"Got {len(prompts)} prompts for {len(texts)} completions: give one prompt per completion.")
    out_prompts, completions = [], []
    for prompt, text in zip(prompts, texts, strict=True):
        if isinstance(prompt, str):
            out_prompts.append(prompt)
            completions.append(text)
            continue
        messages = list(prompt)
        prefix = ""
        if messages and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant":
            prefix = _content_text(messages.pop().get("content"))
        out_prompts.append(messages)
        completions.append([{"role": "assistant", "content": prefix + text}])
    return out_prompts, completions
