"""Sampling completions with ``generate`` on a left-padded batch: greedy, keyed, or from the process RNG.

Sampling is keyed ([`KeyedSampling`][KeyedSampling]): each completion's random draws are a function of the run seed, the
step, the prompt's global index and the completion's index in its group, so they do not depend on the process
that samples it, on the rest of its batch, or on any RNG state. A run on N processes samples what a run on one
samples.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..functional.keyed import keyed_gumbel, mix


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
    """Sample one completion per (left-padded) prompt row with ``model.generate``: the one generate path of the
    package (RL rollouts, the survey, ``reasonattn analyze``).

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


@dataclass
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
