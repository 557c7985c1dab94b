"""Log-probabilities and entropies of sampled completions, and the rhythm measured in the same forward.

Layout of a batch of ``B`` rollouts: ``[prompt, left-padded to P | completion, right-padded to T]``, so the
completion always sits in the last ``T`` columns and the hidden states of columns ``P - 1 .. P + T - 2``
predict it (column ``P - 1 + j`` predicts completion token ``j``).

Log-probabilities come from the decoder's last hidden states through
[`chunked_logprobs`][lightning_reasonattn.functional.logprobs.chunked_logprobs], so the ``[B, T, vocab]`` logits are
never held for the backward; models whose head is not a plain bias-free linear map (soft-capping, logit scaling, a
LoRA-wrapped head) take the plain route through the logits.
"""

from __future__ import annotations

import torch

from ..capture import rhythm_capture, unwrap_causal_lm
from ..functional.coupling import logits_entropy
from ..functional.logprobs import chunked_logprobs
from ..functional.trace import RhythmTrace


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
