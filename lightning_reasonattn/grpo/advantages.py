"""Group-normalised advantages of GRPO and the credit that scales them per token."""

from __future__ import annotations

import torch

from ..rewards.protocol import nanstd

SCALES = ("group", "batch", "none")
SIGN_MODES = ("both", "positive")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """``A_i = (r_i - mean(group)) / (std + eps)``, one advantage per completion.

    Completions are laid out group by group: ``rewards[p * G + j]`` is completion ``j`` of prompt ``p``. A NaN
    reward (a completion no reward function applies to, see
    [`lightning_reasonattn.rewards.protocol`][lightning_reasonattn.rewards.protocol]) is left out of its group's
    mean and std and gets advantage 0, as in TRL.

    Args:
        rewards: ``[P * G]`` rewards, NaN where there is none.
        group_size: ``G``, completions per prompt.
        scale: ``"group"`` divides by the group's std (GRPO), ``"batch"`` by the std of the whole batch,
            ``"none"`` does not divide (Dr. GRPO). The std is the unbiased one, as in TRL.
        eps: added to the std, so a group of equal rewards gets advantage 0, never NaN.

    Returns:
        ``[P * G]`` float32 advantages, all finite.
    """
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is unknown: use one of {', '.join(SCALES)}.")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size={group_size!r} is invalid: it must be an integer >= 1.")
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards has shape {tuple(rewards.shape)}: expected a flat tensor of prompts x group_size "
            f"({group_size}) rewards."
        )
    r = rewards.float().view(-1, group_size)
    centred = r - r.nanmean(1, keepdim=True)
    if scale == "none":
        return centred.nan_to_num(0.0).flatten()
    std = nanstd(r, 1) if scale == "group" else nanstd(rewards.float())
    return (centred / (std + eps)).nan_to_num(0.0).flatten()


def token_advantages(
    advantages: torch.Tensor, gamma: torch.Tensor | None = None, sign_mode: str = "both"
) -> torch.Tensor:
    """Per-token advantages ``gamma[t] * A`` of every completion token.

    Args:
        advantages: ``[B]`` sequence advantages.
        gamma: ``[B, T]`` credit multipliers (``None``: all 1, plain GRPO). It carries no gradient.
        sign_mode: ``"both"`` scales every advantage (paper v2); ``"positive"`` scales only ``A > 0``
            (paper v1), negative advantages keep gamma = 1.

    Returns:
        ``[B, T]`` (or ``[B, 1]`` when ``gamma`` is None, broadcasting over tokens).
    """
    if sign_mode not in SIGN_MODES:
        raise ValueError(f"sign_mode={sign_mode!r} is unknown: use 'both' (default) or 'positive'.")
    a = advantages.float()[:, None]
    if gamma is None:
        return a
    g = gamma.detach().float()
    if sign_mode == "positive":
        g = torch.where(a > 0, g, torch.ones_like(g))
    return g * a
