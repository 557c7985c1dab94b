"""Sampling completions with ``generate`` on a left-padded batch: greedy, keyed, or from the process RNG.

Sampling is keyed ([`KeyedSampling`][lightning_reasonattn.rollout.keyed_sampling.KeyedSampling]): each completion's
random draws are a function of the run seed, the step, the prompt's global index and the completion's index in its
group, so they do not depend on the process that samples it, on the rest of its batch, or on any RNG state. A run on
N processes samples what a run on one samples.

A transformers model samples with its ``generate``; any other ``torch.nn.Module`` (ids ``[B, N]`` -> logits ``[B, N,
V]``) with the decode loop of [`lightning_reasonattn.rollout.decode`][lightning_reasonattn.rollout.decode], which
chooses the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..capture.route import is_transformers_model
from .completions import Completions, completion_mask
from .decode import decode
from .keyed_sampling import KeyedSampling, gumbel_noise

__all__ = [  # Completions, completion_mask, KeyedSampling and gumbel_noise are still imported from here
    "Completions",
    "KeyedSampling",
    "SampledBatch",
    "completion_mask",
    "gumbel_noise",
    "join_completions",
    "sample",
    "sample_batch",
]


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    eos_ids: list[int],
    pad_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    keys: torch.Tensor | None = None,
    *,
    streamer=None,
) -> Completions:
    """Sample one completion per (left-padded) prompt row with ``model.generate`` (a plain module: with
    [`decode`][lightning_reasonattn.rollout.decode.decode]).

    Args:
        prompt_ids: ``[B, P]`` left-padded prompts (repeat each prompt G times beforehand).
        prompt_mask: ``[B, P]``, 0 at padding.
        temperature: ``0`` decodes greedily (``top_p``, ``top_k`` and ``keys`` are then ignored).
        keys: ``[B]`` int64 row keys: sample with [`KeyedSampling`][KeyedSampling] (the draws depend on the keys only);
            ``None`` samples with ``generate``'s own ``do_sample`` from the process RNG.
        streamer: passed to ``generate``, which calls its ``put`` with the prompt ids, then with each step's ``[B]`` new
            tokens, and ``end()`` at the end (progress reports; it does not touch the sampling).

    Returns:
        [`Completions`][Completions] of width ``<= max_new_tokens``.
    """
    if not is_transformers_model(model):  # any other module: the decode loop, the same tokens as generate
        how = dict(temperature=temperature, top_p=top_p, top_k=top_k, keys=keys, streamer=streamer)
        return decode(model, prompt_ids, prompt_mask, eos_ids, pad_id, max_new_tokens, **how)
    was_training = model.training
    model.eval()
    try:
        greedy = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        if temperature == 0:  # greedy, for evaluation
            how = greedy
        elif keys is not None:  # argmax of keyed-Gumbel-perturbed warped logits = a keyed sample
            from transformers import LogitsProcessorList

            keyed = KeyedSampling(keys, prompt_ids.shape[1], temperature, top_p, top_k)
            how = dict(greedy, logits_processor=LogitsProcessorList([keyed]))
        else:
            how = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k if top_k is not None else 0)
        out = model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_ids,
            pad_token_id=pad_id,
            streamer=streamer,
            **how,
        )
    finally:
        model.train(was_training)
    ids = out[:, prompt_ids.shape[1] :]
    mask, truncated = completion_mask(ids, eos_ids)
    return Completions(ids.masked_fill(~mask, pad_id), mask, truncated)


@dataclass(frozen=True)
class SampledBatch:
    """Prompts and their sampled completions as one batch, the masks made once.

    Layout: ``[prompt, left-padded to P | completion, right-padded to T]``, so the completion always sits in the
    last ``T`` columns, and column ``P - 1 + j`` predicts completion token ``j``.

    Attributes:
        ids: ``[B, P + T]`` prompt + completion token ids.
        attention_mask: ``[B, P + T]`` int64, 0 at padding.
        response_mask: ``[B, P + T]`` bool: the completion tokens (up to and including the first EOS), whose
            rhythm is measured.
        completion_mask: ``[B, T]`` bool, the same over the completion columns only.
        truncated: ``[B]`` bool: no EOS within ``max_new_tokens``.
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor

    @property
    def width(self) -> int:
        """``T``, the completion columns."""
        return self.completion_mask.shape[1]

    @property
    def completion_ids(self) -> torch.Tensor:
        """``[B, T]`` completion token ids (padding after the end)."""
        return self.ids[:, -self.width :]

    def rows(self, rows: slice) -> SampledBatch:
        """The batch of the rows ``rows`` (views, no copy)."""
        return SampledBatch(
            ids=self.ids[rows],
            attention_mask=self.attention_mask[rows],
            response_mask=self.response_mask[rows],
            completion_mask=self.completion_mask[rows],
            truncated=self.truncated[rows],
        )


def join_completions(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completions: Completions) -> SampledBatch:
    """The [`SampledBatch`][SampledBatch] of left-padded prompts ``[B, P]`` and their completions."""
    response_mask = torch.cat([torch.zeros_like(prompt_mask, dtype=torch.bool), completions.mask], 1)
    return SampledBatch(
        ids=torch.cat([prompt_ids, completions.ids], 1),
        attention_mask=torch.cat([prompt_mask, completions.mask.long()], 1),
        response_mask=response_mask,
        completion_mask=completions.mask,
        truncated=completions.truncated,
    )


def sample_batch(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    eos_ids: list[int],
    pad_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    keys: torch.Tensor | None = None,
    streamer=None,
) -> SampledBatch:
    """[`sample`][sample] one completion per prompt row, then
    [`join_completions`][join_completions]: the batch that
    [`measure`][lightning_reasonattn.rollout.logprobs.measure] reads."""
    completions = sample(
        model,
        prompt_ids,
        prompt_mask,
        eos_ids=eos_ids,
        pad_id=pad_id,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        keys=keys,
        streamer=streamer,
    )
    return join_completions(prompt_ids, prompt_mask, completions)
