"""The clipped policy-gradient loss of GRPO and its relatives, with the statistics TRL logs."""

from __future__ import annotations

from typing import Literal, get_args

import torch

LossAggregation = Literal["token-mean", "seq-mean-token-mean", "dr-grpo"]
LOSS_TYPES = get_args(LossAggregation)
LOSS_ALIASES = {"dapo": "token-mean", "grpo": "seq-mean-token-mean", "dr_grpo": "dr-grpo"}
"""TRL ``GRPOConfig.loss_type`` names with the same aggregation here."""
LossType = Literal[(*LOSS_TYPES, *LOSS_ALIASES)]
"""Every name ``loss.loss_type`` accepts: this project's and TRL's aliases (stored under this project's name)."""


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate ``exp(ref - logp) - (ref - logp) - 1`` (Schulman's k3; >= 0, unbiased)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_len: int | None = None) -> torch.Tensor:
    """Reduce ``[B, T]`` per-token losses to a scalar.

    * ``token-mean``: ``sum(l * m) / sum(m)`` (every token of the batch weighs the same; DAPO);
    * ``seq-mean-token-mean``: mean over sequences of each sequence's token mean (original GRPO);
    * ``dr-grpo``: ``sum(l * m) / (B * max_len)`` (no length normalisation; Dr. GRPO).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r} is unknown: use one of {', '.join(LOSS_TYPES)}.")
    m = mask.to(per_token.dtype)
    if loss_type == "token-mean":
        return (per_token * m).sum() / m.sum().clamp_min(1)
    if loss_type == "seq-mean-token-mean":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp_min(1)).mean()
    width = max_len if max_len is not None else per_token.shape[-1]
    return (per_token * m).sum() / (per_token.shape[0] * width)


def minibatches(
    mask: torch.Tensor,
    size: int | None,
    loss_type: str,
    world_size: int = 1,
    global_tokens: torch.Tensor | None = None,
) -> list[tuple[slice, torch.Tensor]]:
    """Mini-batches of rows and the weight of each, so that ``sum_i w_i * aggregate(batch_i)`` equals
    ``aggregate(whole batch)`` for ``loss_type`` (gradient accumulation without changing the loss).

    Under DDP each of ``world_size`` processes holds an equal share of the batch's rows and its gradient is
    averaged with the others'; the weights then make the average over processes equal the whole batch's loss:
    for ``token-mean`` ``w_i = W * tokens_i / global_tokens`` (tokens of all processes), for the other losses
    (means over rows, every process having as many) the local row shares.

    Args:
        mask: ``[B, T]`` tokens that count (this process's rows).
        size: rows per mini-batch (``None``: one mini-batch).
        world_size: ``W``, processes whose gradients are averaged.
        global_tokens: the number of counted tokens over all processes (``token-mean``; default: this mask's).

    Returns:
        ``[(rows, weight)]``: ``weight`` is the share of the batch's tokens (``token-mean``) or rows (others).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r} is unknown: use one of {', '.join(LOSS_TYPES)}.")
    n = mask.shape[0]
    size = size or n
    total = (mask.sum() if global_tokens is None else global_tokens).clamp_min(1)
    out = []
    for b0 in range(0, n, size):
        rows = slice(b0, min(b0 + size, n))
        if loss_type == "token-mean":
            out.append((rows, mask[rows].sum() * world_size / total))
        else:
            out.append((rows, torch.tensor((rows.stop - b0) / n)))
    return out


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    loss_type: str = "token-mean",
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    max_len: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate ``-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) + beta KL``, aggregated.

    Args:
        logp: ``[B, T]`` log-probabilities of the completion tokens under the current policy (with grad).
        old_logp: ``[B, T]`` the same under the policy that sampled them (no grad).
        advantages: ``[B, T]`` or ``[B, 1]`` per-token advantages (credit already applied).
        mask: ``[B, T]`` completion tokens that count.
        ref_logp: ``[B, T]`` under the reference policy (needed when ``beta > 0``).

    Returns:
        ``(loss, stats)``; stats (detached scalars): ``kl``, ``clip_ratio/low_mean`` (share of tokens
        clipped at the lower bound with ``A < 0``), ``clip_ratio/high_mean`` (upper bound, ``A > 0``),
        ``clip_ratio/region_mean`` (either).
    """
    if beta > 0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp (the reference policy's log-probabilities); or set beta=0.")
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    adv = advantages.expand_as(logp)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else None
    if beta > 0:
        per_token = per_token + beta * kl
    loss = aggregate(per_token, mask, loss_type, max_len)
    m = mask.bool()
    n = m.sum().clamp_min(1)
    with torch.no_grad():
        low = (ratio < 1 - epsilon_low) & (adv < 0) & m
        high = (ratio > 1 + epsilon_high) & (adv > 0) & m
        stats = {
            "clip_ratio/low_mean": low.sum() / n,
            "clip_ratio/high_mean": high.sum() / n,
            "clip_ratio/region_mean": (low | high).sum() / n,
            "kl": (kl * m).sum() / n if kl is not None else torch.zeros((), device=logp.device),
        }
    return loss, stats
