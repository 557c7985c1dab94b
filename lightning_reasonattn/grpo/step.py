"""The pieces of one GRPO step that touch the model: prompt encoding, log-probabilities and the scoring pass.

Layout of a batch of ``B`` rollouts: ``[prompt, left-padded to P | completion, right-padded to T]``, so the
completion always sits in the last ``T`` columns and the hidden states of columns ``P - 1 .. P + T - 2``
predict it (column ``P - 1 + j`` predicts completion token ``j``).

Log-probabilities come from the decoder's last hidden states through
[`chunked_logprobs`][lightning_reasonattn.functional.logprobs.chunked_logprobs], so the ``[B, T, vocab]`` logits are
never held for the backward; models whose head is not a plain bias-free linear map (soft-capping, logit scaling, a
LoRA-wrapped head) take the plain route through the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..capture import rhythm_capture, unwrap_causal_lm
from ..functional.coupling import logits_entropy
from ..functional.logprobs import chunked_logprobs
from ..functional.trace import RhythmTrace


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


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def selective_log_softmax(logits: torch.Tensor, ids: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """``log softmax(logits)[..., ids]`` without a full float32 ``[B, T, V]`` log-softmax (row chunks)."""
    out = []
    for c0 in range(0, logits.shape[0], chunk):
        rows = logits[c0 : c0 + chunk].float()
        picked = rows.gather(-1, ids[c0 : c0 + chunk, :, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(rows, dim=-1))
    return torch.cat(out)


def completion_logits(model, input_ids, attention_mask, width: int, temperature: float = 1.0) -> torch.Tensor:
    """``[B, T, V]`` logits that predict the ``T = width`` completion tokens, divided by the temperature."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
        logits_to_keep=width + 1,
    )
    return out.logits[:, :-1] / temperature


# Config attributes that make the logits more than ``hidden @ W^T``: those models take the plain route.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def fused_head(model) -> tuple[torch.nn.Module, torch.Tensor] | None:
    """``(decoder, W)`` when ``model``'s logits are ``decoder(...).last_hidden_state @ W^T``, else ``None``."""
    lm = unwrap_causal_lm(model)
    head = lm.get_output_embeddings()
    decoder = getattr(lm, lm.base_model_prefix, None)
    if type(head) is not torch.nn.Linear or head.bias is not None or decoder is None:
        return None
    if any(getattr(lm.config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return None
    return decoder, head.weight


def completion_logprobs_entropy(
    model, input_ids, attention_mask, width: int, temperature: float = 1.0, chunk: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([B, T] log-probabilities, [B, T] entropies)`` of the ``T = width`` completion tokens.

    The log-probabilities carry the gradient (if enabled); the entropies (of the distribution each token
    was drawn from) do not. Without the full logits where the head allows it (see [`fused_head`][fused_head]).
    """
    targets = input_ids[:, -width:]
    fused = fused_head(model)
    if fused is None:
        logits = completion_logits(model, input_ids, attention_mask, width, temperature)
        return selective_log_softmax(logits, targets), logits_entropy(logits.detach())
    decoder, weight = fused
    out = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
    )
    hidden = out.last_hidden_state[:, -width - 1 : -1]
    return chunked_logprobs(hidden, weight, targets, temperature, chunk)


def completion_logprobs(model, input_ids, attention_mask, width: int, temperature: float = 1.0) -> torch.Tensor:
    """``[B, T]`` log-probabilities of the completion tokens (with grad if enabled)."""
    return completion_logprobs_entropy(model, input_ids, attention_mask, width, temperature)[0]


def measured_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    width: int,
    temperature: float = 1.0,
    rhythm: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, RhythmTrace | None]:
    """One forward: ``(logp [B, T], entropy [B, T], trace)``, the RhythmTrace captured in that same pass.

    Args:
        response_mask: ``[B, P + T]`` bool, the tokens whose rhythm is measured.
        rhythm: ``capture_rhythm`` settings (``layers``, ``window``, ``horizon``, ``block_size``,
            ``head_fraction``, ``q``, ``k``), or ``None`` to skip the capture (``trace`` is then ``None``).
    """
    if rhythm is None:
        return (*completion_logprobs_entropy(model, input_ids, attention_mask, width, temperature), None)
    capture = {key: rhythm[key] for key in ("layers", "window", "horizon", "block_size") if key in rhythm}
    with rhythm_capture(model, response_mask, attention_mask, **capture) as rec:
        logp, entropy = completion_logprobs_entropy(model, input_ids, attention_mask, width, temperature)
    return logp, entropy, rec.trace(rhythm.get("head_fraction", 0.3), rhythm.get("q", 0.4), rhythm.get("k", 3))


@dataclass
class Scored:
    """What the no-grad scoring pass gives for a micro-batch."""

    old_logp: torch.Tensor  # [b, T]
    trace: RhythmTrace | None  # over the full [b, P + T] sequences
    entropy: torch.Tensor | None  # [b, T], entropy of the distribution each completion token came from


def score(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    width: int,
    temperature: float = 1.0,
    rhythm: dict | None = None,
    want_entropy: bool = False,
) -> Scored:
    """One no-grad forward: old log-probabilities, and (if ``rhythm`` is given) the RhythmTrace of the same pass.

    Args:
        rhythm: ``capture_rhythm`` settings (``layers``, ``window``, ``horizon``, ``block_size``,
            ``head_fraction``, ``q``, ``k``), or ``None`` to skip the capture.
    """
    response = torch.zeros_like(attention_mask, dtype=torch.bool)
    response[:, -width:] = attention_mask[:, -width:].bool()
    with torch.no_grad():
        old_logp, entropy, trace = measured_logprobs(
            model, input_ids, attention_mask, response, width, temperature, rhythm
        )
    return Scored(old_logp, trace, entropy if want_entropy else None)
