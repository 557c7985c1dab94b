"""Prompts as token ids (chat messages through the chat template, a left-padded batch), and the ids that end a
completion ([`end_ids`][lightning_reasonattn.rollout.prompts.end_ids]: the one end-of-sequence resolver of RL
rollouts, the survey and ``analyze``).

A transformers tokenizer encodes the batch; a *plain* tokenizer (anything else with ``encode(str) -> list[int]``,
``decode(list[int]) -> str`` and ``eos_token_id``, such as
[`WordTokenizer`][lightning_reasonattn.models.word_tokenizer.WordTokenizer]) encodes each plain-text prompt as it
is, padded on the left with [`plain_pad_id`][lightning_reasonattn.rollout.prompts.plain_pad_id]. Either way the rows
are padded here, so the tokenizer needs no pad token and is not changed.
"""

from __future__ import annotations

import sys

import torch


def prompt_text(tokenizer, prompt) -> tuple[str, bool]:
    """``(text, add_special_tokens)``: chat messages go through the chat template; strings stay raw.

    Messages that end with an assistant message are continued from it (``continue_final_message``), so the
    completion extends that prefix; otherwise the template opens a new assistant turn.
    """
    if isinstance(prompt, str):
        return prompt, True
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "a prompt is a list of chat messages but the tokenizer has no chat template: give plain-text prompts "
            "or a tokenizer with a chat template."
        )
    # a prompt that ends with an assistant message is a prefix for the model to continue (as in TRL)
    prefix = isinstance(prompt[-1], dict) and prompt[-1].get("role") == "assistant" if prompt else False
    text = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=not prefix, continue_final_message=prefix, tokenize=False
    )
    return text, False


def is_transformers_tokenizer(tokenizer) -> bool:
    """Whether ``tokenizer`` is a transformers tokenizer (without importing transformers)."""
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedTokenizerBase

    return isinstance(tokenizer, PreTrainedTokenizerBase)


def plain_pad_id(tokenizer) -> int:
    """The id a plain tokenizer's prompts are padded with: its ``pad_token_id``, else its ``eos_token_id``.

    Raises:
        ValueError: it has neither.
    """
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    raise ValueError(
        f"{type(tokenizer).__name__} has neither pad_token_id nor eos_token_id: give the tokenizer an eos_token_id "
        "(the id that ends a completion)."
    )


def encode_plain(tokenizer, prompts: list, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of plain-text prompts through a plain tokenizer's ``encode``, left-padded with
    [`plain_pad_id`][lightning_reasonattn.rollout.prompts.plain_pad_id].

    Raises:
        ValueError: a prompt that is not a string (chat messages need a chat template), or that encodes to no token.
    """
    name = type(tokenizer).__name__
    if not callable(getattr(tokenizer, "encode", None)):
        raise TypeError(f"tokenizer {name} has no encode(text) -> list[int]: pass a tokenizer that encodes text.")
    pad = plain_pad_id(tokenizer)
    rows = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ValueError(
                f"prompt {i} is {type(prompt).__name__}, not text, but {name} is a plain tokenizer (encode and decode, "
                "no chat template): give plain-text prompts (for a task: chat: false)."
            )
        rows.append([int(t) for t in tokenizer.encode(prompt)])
        if not rows[-1]:
            raise ValueError(f"prompt {i} ({prompt!r:.60}) encodes to no token: give each prompt some text.")
    return left_padded(rows, pad, device)


def _ids(value) -> list[int]:
    """An end id setting (``None``, an int or a list of ints) as a list."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def end_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion of ``model``: the tokenizer's ``eos_token_id`` and the model's
    ``generation_config.eos_token_id`` (an int or a list: chat models list their end-of-turn ids there), sorted.

    ``generate`` alone stops at the generation config's ids only; a tokenizer whose end id is not among them (or the
    other way round) would make RL rollouts and a survey cut the same completion at different tokens. Every sampling
    path of the package takes its end ids from here.

    Example:
        >>> from types import SimpleNamespace as Obj
        >>> chat = Obj(generation_config=Obj(eos_token_id=[7, 9]))
        >>> end_ids(chat, Obj(eos_token_id=2)), end_ids(Obj(), Obj(eos_token_id=2))
        ([2, 7, 9], [2])
    """
    config = getattr(model, "generation_config", None)
    found = _ids(getattr(tokenizer, "eos_token_id", None)) + _ids(getattr(config, "eos_token_id", None))
    return sorted(set(found))


def pad_id(model, tokenizer) -> int:
    """The id that pads a batch: the tokenizer's ``pad_token_id``, else the first end id (as ``generate`` does); the
    tokenizer is not changed.

    Raises:
        ValueError: the tokenizer has neither a pad nor an end id.
    """
    if getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    ends = end_ids(model, tokenizer)
    if not ends:
        raise ValueError(
            f"{type(tokenizer).__name__} has neither a pad token nor an end-of-sequence token: set "
            "tokenizer.pad_token (or the model's generation_config.eos_token_id) before sampling."
        )
    return ends[0]


def left_padded(
    rows: list[list[int]], pad: int | None, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` ``[B, P]``: token id rows padded on the left with ``pad`` to the longest.

    Raises:
        ValueError: rows of different lengths and no pad id.
    """
    width = max((len(row) for row in rows), default=0)
    if pad is None and any(len(row) < width for row in rows):
        raise ValueError("prompts of different lengths need a pad id: pass pad=pad_id(model, tokenizer).")
    fill = 0 if pad is None else pad  # (no row is padded without a pad id)
    ids = torch.tensor([[fill] * (width - len(row)) + list(row) for row in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
    return ids.reshape(len(rows), width).to(device), mask.reshape(len(rows), width).to(device)


def encode_prompts(
    tokenizer, prompts: list, device: torch.device | str = "cpu", pad: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: ``[B, P]`` left-padded prompt ids and their attention mask (a plain tokenizer: see
    [`encode_plain`][lightning_reasonattn.rollout.prompts.encode_plain]).

    Args:
        tokenizer: encodes the prompts (it is not changed).
        prompts: strings or chat messages.
        device: where the tensors go.
        pad: the padding id (default: the tokenizer's ``pad_token_id``; see [`pad_id`][pad_id]).
    """
    if not is_transformers_tokenizer(tokenizer):
        return encode_plain(tokenizer, prompts, device)
    texts = [prompt_text(tokenizer, p) for p in prompts]
    special = {flag for _, flag in texts}
    rows = tokenizer([t for t, _ in texts], add_special_tokens=special == {True}).input_ids
    return left_padded(rows, tokenizer.pad_token_id if pad is None else pad, device)
