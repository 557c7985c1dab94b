"""Measuring sampled completions: their log-probabilities and entropies, and the rhythm, in one forward.

Layout of a batch of ``B`` rollouts: ``[prompt, left-padded to P | completion, right-padded to T]``, so the
completion always sits in the last ``T`` columns and the hidden states of columns ``P - 1 .. P + T - 2``
predict it (column ``P - 1 + j`` predicts completion token ``j``).

Log-probabilities come from the decoder's last hidden states through
[`chunked_logprobs`][lightning_reasonattn.functional.logprobs.chunked_logprobs], so the ``[B, T, vocab]`` logits are
never held for the backward; models whose head is not a plain bias-free linear map (soft-capping, logit scaling, a
LoRA-wrapped head) take the plain route through the logits. A plain PyTorch module (not a transformers model)
takes that route too, its rows moved to the left first
([`lightning_reasonattn.rollout.plain`][lightning_reasonattn.rollout.plain]).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..capture import rhythm_capture, unwrap_causal_lm
from ..capture.route import is_transformers_model
from ..functional.coupling import logits_entropy
from ..functional.logprobs import chunked_logprobs
from ..functional.trace import RhythmTrace
from ..settings import RhythmSettings
from .plain import Aligned, plain_completion_logits
from .sampling import SampledBatch


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
    if not is_transformers_model(model):  # a plain module: its rows moved to the left (rollout.plain)
        logits, real = plain_completion_logits(model, input_ids, attention_mask, width, temperature)
        logp = selective_log_softmax(logits, targets).masked_fill(~real, 0.0)
        return logp, logits_entropy(logits.detach()).masked_fill(~real, 0.0)
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


def completion_logprobs(model, batch: SampledBatch, temperature: float = 1.0) -> torch.Tensor:
    """``[B, T]`` log-probabilities of the completion tokens of ``batch`` (with grad if enabled)."""
    return completion_logprobs_entropy(model, batch.ids, batch.attention_mask, batch.width, temperature)[0]


@dataclass
class Measured:
    """What one forward over a [`SampledBatch`][lightning_reasonattn.rollout.sampling.SampledBatch] gives.

    Attributes:
        logp: ``[B, T]`` log-probabilities of the completion tokens (with grad if enabled).
        entropy: ``[B, T]`` entropy of the distribution each completion token was drawn from (no grad).
        trace: the [`RhythmTrace`][lightning_reasonattn.RhythmTrace] of the same pass over the ``[B, P + T]``
            sequences, or ``None`` when the rhythm was not asked for.
    """

    logp: torch.Tensor
    entropy: torch.Tensor
    trace: RhythmTrace | None = None


def measure(model, batch: SampledBatch, temperature: float = 1.0, rhythm: RhythmSettings | None = None) -> Measured:
    """One forward over prompt + completion: the completion's log-probabilities and entropies, and with ``rhythm``
    the rhythm of the completion captured in that same pass (no extra forward, no second model).

    A plain module (not a transformers model) runs its rows moved to the left, so it sees no padding, and every
    ``[B, N]`` output is mapped back to the batch's columns (see
    [`lightning_reasonattn.rollout.plain`][lightning_reasonattn.rollout.plain]); the log-probabilities and entropies
    of its completion padding are 0.

    Args:
        model: the causal LM (peft-wrapped, 4-bit: as it is trained), or a plain module whose attention calls
            ``scaled_dot_product_attention`` (ids ``[B, N]`` -> logits ``[B, N, V]``).
        batch: the sampled batch (its ``response_mask`` says whose rhythm is measured).
        temperature: the log-probabilities and entropies are those of ``softmax(logits / temperature)``.
        rhythm: the rhythm's settings, or ``None`` to skip the capture.
    """
    forward = dict(input_ids=batch.ids, attention_mask=batch.attention_mask, width=batch.width, temperature=temperature)
    if rhythm is None:
        return Measured(*completion_logprobs_entropy(model, **forward))
    # a plain module runs its rows moved to the left (it takes no padding mask): the capture sees those rows
    aligned = None if is_transformers_model(model) else Aligned(batch.attention_mask)
    response_mask = batch.response_mask if aligned is None else aligned.take(batch.response_mask, False)
    attention_mask = batch.attention_mask if aligned is None else aligned.mask
    with rhythm_capture(model, response_mask, attention_mask, rhythm=rhythm) as rec:
        logp, entropy = completion_logprobs_entropy(model, **forward)
    trace = rec.trace()
    return Measured(logp, entropy, trace if aligned is None else aligned.trace_back(trace, batch.response_mask))
