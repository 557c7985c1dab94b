"""Keyed sampling: the draws of a completion depend on its key, not on an RNG state, its batch or its process.

Each completion's random draws are a function of the run seed, the step, the prompt's global index and the
completion's index in its group, so a run on N processes samples what a run on one samples. ``generate`` applies
[`KeyedSampling`][lightning_reasonattn.rollout.keyed_sampling.KeyedSampling] as a logits processor; the decode loop of
plain modules ([`lightning_reasonattn.rollout.decode`][lightning_reasonattn.rollout.decode]) makes the same choice.
"""

from __future__ import annotations

import torch

from ..functional.keyed import keyed_gumbel, mix


class KeyedSampling:
    """A ``generate`` logits processor that makes greedy decoding an exact, keyed categorical sample.

    Each step it applies the temperature, top-k and top-p (transformers' own warpers, in the order ``generate``
    uses) and adds Gumbel noise keyed by ``(row key, decode position, token id)``
    ([`keyed_gumbel`][lightning_reasonattn.functional.keyed.keyed_gumbel]); ``generate(do_sample=False)`` then takes the
    argmax, which is a draw from the warped softmax (the Gumbel-max trick) that depends on the keys only.

    Args:
        keys: ``[B]`` int64 row keys, e.g. ``mix(seed, step, prompt_index, j)``.
        prompt_width: ``P``, the width of the (left-padded) prompt batch: decode position = ``len - P``.
        temperature: > 0.
        top_p: in ``(0, 1]``.
        top_k: ``None`` or ``0`` for no top-k.
    """

    def __init__(
        self, keys: torch.Tensor, prompt_width: int, temperature: float, top_p: float = 1.0, top_k: int | None = None
    ):
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r}: keyed sampling needs a temperature > 0 (0 is greedy).")
        self.keys = keys
        self.prompt_width = prompt_width
        self.warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k=top_k))
        if top_p is not None and top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=top_p))
        self._tokens: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        if self._tokens is None or self._tokens.numel() != scores.shape[-1]:
            self._tokens = torch.arange(scores.shape[-1], device=scores.device)
        position = input_ids.shape[1] - self.prompt_width
        rows = mix(self.keys.to(scores.device), position)
        return scores + gumbel_noise(mix(rows[:, None], self._tokens[None, :]), scores.dtype)


def gumbel_noise(keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Keyed Gumbel noise computed in float64 (float32 where the device has no float64, e.g. MPS)."""
    wide = torch.float32 if keys.device.type == "mps" else torch.float64
    return keyed_gumbel(keys, wide).to(dtype)
