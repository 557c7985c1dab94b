"""The model's context length, checked before generating: prompt tokens plus new tokens must fit in it.

Past its context a model with learned positions fails inside ``generate`` (an index error), and one with rotary
positions generates from positions it never saw; transformers only prints a reminder. RhythmGRPO's rollouts, the
survey and ``reasonattn analyze`` call [`check_context`][check_context] on each batch before generating, so the run
stops with both numbers and the fix instead.
"""

from __future__ import annotations

_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


class ContextLengthError(ValueError):
    """Prompt plus completion would not fit in the model's context; the message gives both numbers and the fix."""


def context_length(model) -> int | None:
    """The longest sequence ``model`` was built for (``max_position_embeddings`` or its other names), or ``None``.

    Args:
        model: a transformers model (a peft model forwards its base's config), or a plain model with LitGPT's
            ``max_seq_length``.
    """
    return _context(model)[0]


def _context(model) -> tuple[int | None, str]:
    """``(length, the name it is read from)``, ``(None, "")`` when the model says nothing."""
    candidates = [("max_seq_length", getattr(model, "max_seq_length", None))]  # LitGPT's GPT, NanoGPT
    config = getattr(model, "config", None)
    if config is not None:
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        candidates += [(key, getattr(config, key, None)) for key in _CONTEXT_KEYS]
    for key, value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None, ""


def check_context(model, prompt_tokens: int, max_new_tokens: int, *, setting: str = "max_new_tokens") -> None:
    """Raise unless ``prompt_tokens + max_new_tokens`` fits in ``model``'s context (no limit known: no check).

    Args:
        model: the model that will generate.
        prompt_tokens: the (padded) prompt width, that is the longest prompt of the batch.
        max_new_tokens: the completion length limit.
        setting: the name of that limit where the user sets it (``sampling.max_new_tokens``, ``--max-new-tokens``).

    Raises:
        ContextLengthError: with the prompt's tokens, the limit, the context, and how to make it fit.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        ...                                      num_attention_heads=2, max_position_embeddings=64, vocab_size=32))
        >>> check_context(model, 40, 24)  # exactly 64: fits
        >>> try:
        ...     check_context(model, 50, 24, setting="--max-new-tokens")
        ... except ContextLengthError as err:
        ...     print(err)  # doctest: +NORMALIZE_WHITESPACE
        a prompt of 50 tokens plus --max-new-tokens 24 makes 74 tokens, more than the model's context of 64
        (its max_position_embeddings): lower --max-new-tokens to 14, or shorten the prompts to at most 40 tokens
    """
    context, key = _context(model)
    if context is None or prompt_tokens + max_new_tokens <= context:
        return
    total = prompt_tokens + max_new_tokens
    if prompt_tokens >= context:
        fix = f"shorten the prompts to at most {max(context - max_new_tokens, 0)} tokens (the prompt alone is too long)"
    else:
        fix = (
            f"lower {setting} to {context - prompt_tokens}, or shorten the prompts to at most "
            f"{max(context - max_new_tokens, 0)} tokens"
        )
    raise ContextLengthError(
        f"a prompt of {prompt_tokens} tokens plus {setting} {max_new_tokens} makes {total} tokens, more than the "
        f"model's context of {context} (its {key}): {fix}"
    )
