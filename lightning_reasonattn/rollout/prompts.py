"""Prompts as token ids: chat messages through the chat template, a left-padded batch."""

from __future__ import annotations

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


def encode_prompts(tokenizer, prompts: list, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: ``[B, P]`` left-padded prompt ids and their attention mask."""
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
