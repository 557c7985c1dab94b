"""The completions a reward function receives: plain text or TRL's conversational messages, read safely.

A completion is a string when its prompt is a string, and ``[{"role": "assistant", "content": text}]`` when the
prompt is a list of messages ([`conversational_completions`][conversational_completions] builds them as TRL does);
[`completion_text`][completion_text] reads either back, refusing any other type with the place and the type named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def completion_text(completion: Any) -> str:
    """The text of one completion, plain or in TRL's conversational format.

    Args:
        completion: a string; a list of ``{"role", "content"}`` messages (their contents are joined with
            newlines; a content may itself be a list of ``{"type": "text", "text": ...}`` parts, of which the text
            ones count); a single message dict; or ``None`` (an empty completion).

    Returns:
        The text, ``""`` for ``None``.

    Raises:
        TypeError: any other type, at any level (bytes, a number, a list of lists, a text part that is not a string);
            the message names where it is and the type received.

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
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"), "the message's content")
    if isinstance(completion, Sequence) and not isinstance(completion, _BYTES):
        texts = []
        for i, message in enumerate(completion):
            if isinstance(message, Mapping):
                texts.append(_content_text(message.get("content"), f"message {i}'s content"))
            elif message is None or isinstance(message, str):
                texts.append(message or "")
            else:
                raise TypeError(f"message {i} is {_received(message)}, not a {{'role', 'content'}} message")
        return "\n".join(texts)
    raise TypeError(f"a completion is text or a list of {{'role', 'content'}} messages, not {_received(completion)}")


_BYTES = (bytes, bytearray, memoryview)


def _received(value: Any) -> str:
    """``"bytes (b'42'): decode it first"``: the type received, the value, and the fix for bytes."""
    text = f"{type(value).__name__} ({brief_repr(value if not isinstance(value, memoryview) else value.tobytes())})"
    return text + (": decode it first" if isinstance(value, _BYTES) else "")


def _content_text(content: Any, what: str = "a message content") -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence) or isinstance(content, _BYTES):
        raise TypeError(f"{what} is a string or a list of parts, not {_received(content)}")
    texts = []
    for j, part in enumerate(content):  # multimodal parts: the text ones count
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping):
            text = part.get("text")
            if text is not None and not isinstance(text, str):
                raise TypeError(f"{what}, part {j}: its text is {_received(text)}, not a string")
            texts.append(text or "")
        else:
            raise TypeError(f"{what}, part {j} is {_received(part)}, not a {{'type': 'text', 'text': ...}} part")
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


def brief_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters; safe for ints past Python's 4300-digit string limit."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:
        return f"an int of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
