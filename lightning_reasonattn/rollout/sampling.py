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

import inspect
from contextlib import contextmanager
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
    seed: int | None = None,
    streamer=None,
) -> Completions:
    """Sample one completion per (left-padded) prompt row with ``model.generate`` (a plain module: with
    [`decode`][lightning_reasonattn.rollout.decode.decode]): the one sampling path of the package (RL rollouts, the
    survey, ``reasonattn analyze``).

    Args:
        prompt_ids: ``[B, P]`` left-padded prompts (repeat each prompt G times beforehand).
        prompt_mask: ``[B, P]``, 0 at padding.
        eos_ids: the ids that end a completion (all of them: see
            [`end_ids`][lightning_reasonattn.rollout.prompts.end_ids]).
        temperature: ``0`` decodes greedily (``top_p``, ``top_k``, ``keys`` and ``seed`` are then ignored).
        keys: ``[B]`` int64 row keys: sample with [`KeyedSampling`][KeyedSampling] (the draws depend on the keys only);
            ``None`` samples with ``generate``'s own ``do_sample`` from the process RNG.
        seed: without ``keys``, seed the RNG of the sampling with it, and give the caller's RNG state back afterwards
            (the draws are those of ``torch.manual_seed(seed)`` then ``generate``; nothing else sees the seed).
        streamer: passed to ``generate``, which calls its ``put`` with the prompt ids, then with each step's ``[B]`` new
            tokens, and ``end()`` at the end (progress reports; it does not touch the sampling).

    Returns:
        [`Completions`][Completions] of width ``<= max_new_tokens``.
    """
    if not is_transformers_model(model):  # any other module: the decode loop, the same tokens as generate
        how = dict(temperature=temperature, top_p=top_p, top_k=top_k, keys=keys, streamer=streamer)
        with seeded(seed if temperature > 0 and keys is None else None, prompt_ids.device):
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
        with seeded(seed if how.get("do_sample") else None, prompt_ids.device):
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
    model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, **options
) -> SampledBatch:
    """[`sample`][sample] one completion per prompt row (``options``: its keyword arguments, ``eos_ids``,
    ``pad_id``, ``max_new_tokens``, ...), then [`join_completions`][join_completions]: the batch that
    [`measure`][lightning_reasonattn.rollout.logprobs.measure] reads."""
    return join_completions(prompt_ids, prompt_mask, sample(model, prompt_ids, prompt_mask, **options))


def _keyword_signature(fn, returns) -> inspect.Signature:
    """``fn``'s signature with every parameter after the first three keyword-only, returning ``returns``."""
    params = list(inspect.signature(fn).parameters.values())
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[3:]]
    return inspect.Signature(params[:3] + rest, return_annotation=returns)


sample_batch.__signature__ = _keyword_signature(sample, SampledBatch)  # what help() and IDEs show


@contextmanager
def seeded(seed: int | None, device: torch.device):
    """Within the block, the CPU RNG and the RNG of ``device`` (CUDA) start from ``seed``; both are given back as
    they were on exit (``None``: the block draws from the RNG as it is)."""
    if seed is None:
        yield
        return
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
