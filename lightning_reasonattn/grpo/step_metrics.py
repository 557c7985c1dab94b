"""The logged values of a GRPO step, from per-completion values and token sums (pure tensor functions).

Under DDP the per-completion values of every rank are gathered first ([`completion_metrics`][completion_metrics] then
sees the whole step), and the token statistics are kept as sums and counts so that the sums over ranks give the
same token-weighted means as one process ([`token_sums`][token_sums], [`token_means`][token_means]).
"""

from __future__ import annotations

import torch

from ..rewards.protocol import RewardLog, reward_metrics

LOSS_STATS = ("kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")


def completion_metrics(
    rewards: torch.Tensor,
    per_function: dict[str, torch.Tensor],
    lengths: torch.Tensor,
    truncated: torch.Tensor,
    group_size: int,
    log: RewardLog | None = None,
) -> dict[str, torch.Tensor]:
    """Reward and length statistics of a step's completions (TRL's names).

    Args:
        rewards: ``[N]`` weighted rewards, group by group (``rewards[p * G + j]``), NaN where no function applies.
        per_function: ``{name: [N]}`` unweighted rewards of each function, NaN where it returned ``None``.
        lengths: ``[N]`` completion lengths in tokens.
        truncated: ``[N]`` no EOS within the budget.
        group_size: ``G``.
        log: what the reward functions logged with ``log_metric`` (every rank's values).

    Returns:
        The reward metrics of [`reward_metrics`][lightning_reasonattn.rewards.protocol.reward_metrics] (NaN-aware:
        ``reward``, ``reward_std``, ``frac_reward_zero_std``, ``rewards/<name>/{mean,std}``, logged metrics),
        and ``completions/{mean,min,max}_length``, ``completions/clipped_ratio``.
    """
    values = reward_metrics(rewards.double(), {k: v.double() for k, v in per_function.items()}, group_size, log)
    lengths = lengths.double()
    values |= {
        "completions/mean_length": lengths.mean(),
        "completions/min_length": lengths.min(),
        "completions/max_length": lengths.max(),
        "completions/clipped_ratio": truncated.double().mean(),
    }
    return values


def token_sums(
    mask: torch.Tensor,
    entropy: torch.Tensor,
    gamma: torch.Tensor,
    preplan: torch.Tensor | None = None,
    anchor: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Sums over the completion tokens of one process, to be added over processes.

    Args:
        mask: ``[B, T]`` bool completion tokens.
        entropy: ``[B, T]`` token entropies.
        gamma: ``[B, T]`` credit multipliers.
        preplan: ``[B, T]`` bool preplan tokens of the trace (rhythm strategies), else ``None``.
        anchor: ``[B, T]`` bool anchor tokens, likewise.

    Returns:
        ``tokens`` (the count), ``entropy``, ``gamma``, ``amplified`` (tokens with ``gamma != 1``) and, with a
        trace, ``preplan`` and ``anchor`` counts.
    """
    sums = {
        "tokens": mask.sum().double(),
        "entropy": entropy[mask].double().sum(),
        "gamma": gamma[mask].double().sum(),
        "amplified": (gamma[mask] != 1).sum().double(),
    }
    if preplan is not None and anchor is not None:
        sums["preplan"] = preplan[mask].sum().double()
        sums["anchor"] = anchor[mask].sum().double()
    return sums


def token_means(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``entropy``, ``credit/mean_gamma``, ``credit/amplified_frac`` (and ``credit/preplan_rate``,
    ``credit/anchor_rate``) as token-weighted means of [`token_sums`][token_sums] (NaN without tokens)."""
    n = sums["tokens"]
    values = {
        "entropy": sums["entropy"] / n,
        "credit/amplified_frac": sums["amplified"] / n,
        "credit/mean_gamma": sums["gamma"] / n,
    }
    if "preplan" in sums:
        values["credit/preplan_rate"] = sums["preplan"] / n
        values["credit/anchor_rate"] = sums["anchor"] / n
    return values


def update_means(total: dict[str, torch.Tensor], largest: dict[str, torch.Tensor], world_size: int) -> dict:
    """The update's logged values from the sums (and maxima) over ``world_size`` ranks of its ``update`` sums.

    ``loss``: the mean of the ranks' losses (each weighted by the world size, see ``loss.minibatches``);
    ``kl`` and the clip ratios: means over the loss tokens; ``tokens_per_sec/*``: throughput of all ranks
    together; ``memory/peak_gib``: the largest rank's.
    """
    values = {"loss": total["loss"] / world_size}
    for key in LOSS_STATS:
        values[key] = total[key] / total["loss_tokens"].clamp_min(1)
    for key in ("tokens_per_sec/rollout", "tokens_per_sec/update"):
        values[key] = total[key]
    if "memory/peak_gib" in largest:
        values["memory/peak_gib"] = largest["memory/peak_gib"]
    return values
