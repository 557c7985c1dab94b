"""Prompts as token ids: chat messages through the chat template, a left-padded batch.

A transformers tokenizer encodes the batch itself; a *plain* tokenizer (anything else with ``encode(str) ->
list[int]``, ``decode(list[int]) -> str`` and ``eos_token_id``, such as
[`WordTokenizer`][lightning_reasonattn.models.word_tokenizer.WordTokenizer]) encodes each plain-text prompt as it
is, padded on the left with [`plain_pad_id`][lightning_reasonattn.rollout.prompts.plain_pad_id].
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
    width = max((len(r) for r in rows), default=0)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long).reshape(len(rows), width)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids.to(device), mask.reshape(len(rows), width).to(device)


def encode_prompts(tokenizer, prompts: list, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: ``[B, P]`` left-padded prompt ids and their attention mask (a plain tokenizer: see
    [`encode_plain`][lightning_reasonattn.rollout.prompts.encode_plain])."""
    if not is_transformers_tokenizer(tokenizer):
        return encode_plain(tokenizer, prompts, device)
    texts = [prompt_text(tokenizer, p) for p in prompts]
    special = {flag for _, flag in texts}
    enc = tokenizer(
        [t for t, _ in texts],
        padding=True,
        padding_side="left",
        add_special_tokens=special == {True},
        return_tensors="pt",
    )
    return enc.input_ids.to(device), enc.attention_mask.to(device)
