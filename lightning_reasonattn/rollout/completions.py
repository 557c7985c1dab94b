"""A batch of sampled completions, right-padded, and the mask of each up to its first end id.

Both ways of sampling give one ([`sample`][lightning_reasonattn.rollout.sampling.sample] with ``generate``, the
decode loop of [`lightning_reasonattn.rollout.decode`][lightning_reasonattn.rollout.decode] for plain modules).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Completions:
    """A batch of sampled completions, right-padded.

    Attributes:
        ids: ``[B, T]`` token ids (padding after the end).
        mask: ``[B, T]`` bool, True up to and including the first EOS.
        truncated: ``[B]`` bool, no EOS within ``max_new_tokens``.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    truncated: torch.Tensor


def completion_mask(ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, truncated)``: tokens up to and including the first EOS; rows with no EOS are truncated.

    Args:
        ids: ``[B, T]`` generated ids.
        eos_ids: the ids that end a completion.
    """
    is_eos = torch.zeros_like(ids, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= ids == eos
    seen_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # an EOS strictly earlier in the row
    return ~seen_before, ~is_eos.any(-1)
