"""Sampling from a plain PyTorch causal LM without ``generate``: a decode loop that gives what ``generate`` gives.

[`sample`][lightning_reasonattn.rollout.sampling.sample] sends every model that is not a transformers model here
(a nanoGPT-style module, LitGPT's ``GPT``, [`NanoGPT`][lightning_reasonattn.models.gpt.NanoGPT]): ``model(ids [B,
N])`` returns logits ``[B, N, V]`` (see [`lightning_reasonattn.rollout.plain`][lightning_reasonattn.rollout.plain]).
The same choice of token as ``generate`` at every step:

* greedy (``temperature=0``): the argmax of the float32 logits;
* keyed (``keys``): transformers' temperature, top-k and top-p warpers in ``generate``'s order, then Gumbel noise
  keyed by ``(row key, decode position, token id)`` and the argmax, exactly as
  [`KeyedSampling`][lightning_reasonattn.rollout.keyed_sampling.KeyedSampling] inside ``generate``, so a row's draws
  depend on its key only;
* unkeyed: the same warpers, then ``torch.multinomial`` on the softmax, from the process RNG (the same
  distribution as ``generate(do_sample=True)``, not the same draws: the rows draw in another order);

a row ends at its first end id (padded with ``pad_id`` after it) or after ``max_new_tokens``; the loop stops when
every row has ended.

Padding. A plain model takes no padding mask, so no row ever holds any: each row is moved to the left (its prompt
at positions ``0 .. p_i - 1``) and all rows advance one column per step. While a row's prompt is longer than the
current column it is fed its next prompt token (its logits are not used); from column ``p_i`` on, its own samples.
So every forward is over real tokens only, and a row's decode position (``column - p_i``) is the one ``generate``
gives it. A batch of prompts of lengths ``p_min .. p_max`` takes ``p_max - p_min`` more steps than one of equal
lengths; that is cheaper than decoding each length apart on a CPU, where a step's cost is mostly per call.

KV cache. A model that offers LitGPT's interface (``set_kv_cache(batch_size, max_seq_length, device=, dtype=)``,
``forward(idx, input_pos=)``, ``clear_kv_cache()``) runs each step over its one new column; the cache is set for
the call and cleared after it. Any other model recomputes the whole prefix every step (``O(N^2)`` in the length).
"""

from __future__ import annotations

import inspect

import torch

from ..capture.rhythm import _check_vocabulary, measuring
from ..functional.keyed import mix
from .completions import Completions, completion_mask
from .context import check_context
from .keyed_sampling import KeyedSampling, gumbel_noise
from .plain import Aligned, check_plain_logits


def offers_kv_cache(model: torch.nn.Module) -> bool:
    """Whether ``model`` offers LitGPT's KV-cache interface: ``set_kv_cache``, ``clear_kv_cache`` and a ``forward``
    that takes ``input_pos``."""
    if not (callable(getattr(model, "set_kv_cache", None)) and callable(getattr(model, "clear_kv_cache", None))):
        return False
    return "input_pos" in _parameters(model)


def _parameters(model: torch.nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


class _Steps:
    """The model's forward over the decode's growing ``[B, n]`` ids: the logits of the last column each time."""

    def __init__(self, model: torch.nn.Module, rows: int, length: int, device: torch.device, use_cache: bool):
        self.model, self.cached = model, use_cache and offers_kv_cache(model)
        self.maxp1 = "input_pos_maxp1" in _parameters(model)
        if self.cached:
            dtype = next(model.parameters()).dtype
            model.set_kv_cache(batch_size=rows, max_seq_length=length, device=device, dtype=dtype)

    def __call__(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """``[B, V]`` float32 logits after ``ids[:, :start + n]``, given the columns ``ids[:, start:start + n]``
        are new (the cached model sees only those; any other the whole prefix)."""
        if not self.cached:
            return check_plain_logits(self.model, self.model(ids), ids)[:, -1].float()
        new = ids[:, start:]
        pos = torch.arange(start, ids.shape[1], device=ids.device)
        extra = {"input_pos_maxp1": ids.shape[1]} if self.maxp1 else {}
        return check_plain_logits(self.model, self.model(new, input_pos=pos, **extra), new)[:, -1].float()

    def close(self) -> None:
        if self.cached:
            self.model.clear_kv_cache()


class _Choice:
    """Which token a row takes from its ``[V]`` float32 logits at its decode position, as ``generate`` would."""

    def __init__(self, temperature: float, top_p: float, top_k: int | None, keys: torch.Tensor | None, rows: int):
        self.greedy, self.keys = temperature == 0, keys
        if not self.greedy:  # transformers' warpers, built as generate builds them (KeyedSampling holds them)
            self.warpers = KeyedSampling(torch.zeros(rows, dtype=torch.long), 0, temperature, top_p, top_k).warpers
        self._tokens: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``[b]`` tokens for the ``rows`` (``[b]`` indices) at decode ``positions`` (``[b]``), logits ``[b, V]``."""
        if self.greedy:
            return logits.argmax(-1)
        for warp in self.warpers:  # row-wise: the same on a subset of rows as on the whole batch
            logits = warp(None, logits)
        if self.keys is None:
            return torch.multinomial(torch.softmax(logits, -1), num_samples=1).squeeze(1)
        if self._tokens is None or self._tokens.numel() != logits.shape[-1]:
            self._tokens = torch.arange(logits.shape[-1], device=logits.device)
        keyed = mix(self.keys.to(logits.device)[rows], positions)
        noise = gumbel_noise(mix(keyed[:, None], self._tokens[None, :]), logits.dtype)
        return (logits + noise).argmax(-1)


@torch.no_grad()
def decode(
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
    use_cache: bool = True,
) -> Completions:
    """Sample one completion per prompt row of a plain model, as ``generate`` would (see the module's docstring).

    Args:
        model: ``model(ids [B, N]) -> logits [B, N, V]`` (or an output with ``.logits``), in eval mode for the call.
        prompt_ids: ``[B, P]`` prompts, left-padded (any padding is moved out, see
            [`Aligned`][lightning_reasonattn.rollout.plain.Aligned]).
        prompt_mask: ``[B, P]``, 0 at padding; every row holds at least one real token.
        eos_ids: the ids that end a completion.
        pad_id: the id after a completion's end.
        max_new_tokens: the longest completion (>= 1).
        temperature: ``0`` decodes greedily (``top_p``, ``top_k`` and ``keys`` are then ignored).
        top_p: nucleus sampling's mass, in ``(0, 1]``.
        top_k: keep the ``top_k`` likeliest tokens; ``None`` or ``0`` keeps all.
        keys: ``[B]`` int64 row keys for keyed sampling; ``None`` samples from the process RNG.
        streamer: called as ``generate`` calls it (``put(prompt_ids)``, then ``put`` of each decode position's
            ``[B]`` tokens, ``end()``), once the batch is decoded.
        use_cache: use the model's KV cache where it offers one (``False``: recompute the prefix, for tests).

    Returns:
        [`Completions`][lightning_reasonattn.rollout.completions.Completions] of width ``<= max_new_tokens``.

    Raises:
        ValueError: ``max_new_tokens < 1``, a row with no real prompt token, ``keys`` of another length than the
            batch, or a prompt id outside the model's input embedding (where it has ``get_input_embeddings``).
        ContextLengthError: the longest prompt plus ``max_new_tokens`` is longer than the model's
            ``max_seq_length``.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: pass a whole number of new tokens, at least 1.")
    rows, device = prompt_ids.shape[0], prompt_ids.device
    aligned = Aligned(prompt_mask)
    lengths = aligned.lengths
    if rows and int(lengths.min()) == 0:
        empty = int((lengths == 0).nonzero()[0])
        raise ValueError(
            f"prompt row {empty} holds no real token (its attention mask is all 0): a plain model predicts from "
            "the prompt's tokens, so give every prompt at least one token."
        )
    if keys is not None and temperature != 0 and tuple(keys.shape) != (rows,):
        raise ValueError(f"keys has shape {tuple(keys.shape)}: pass one int64 key per prompt row, shape ({rows},).")
    check_context(model, int(lengths.max()) if rows else 0, max_new_tokens)
    _check_vocabulary(model, prompt_ids.masked_fill(prompt_mask == 0, 0))  # an id past the embedding: say so
    longest = int(lengths.max()) if rows else 0
    length = longest + max_new_tokens
    ids = torch.full((rows, length), pad_id, dtype=torch.long, device=device)
    ids[:, :longest] = aligned.take(prompt_ids, pad_id)
    generated = torch.zeros(rows, dtype=torch.long, device=device)  # completion tokens each row holds
    ended = torch.zeros(rows, dtype=torch.bool, device=device)
    ends = torch.tensor(list(eos_ids), dtype=torch.long, device=device)
    choose = _Choice(temperature, top_p, top_k, keys, rows)
    with measuring(model):
        steps = _Steps(model, rows, length, device, use_cache)
        try:
            start = int(lengths.min()) if rows else 0
            logits = steps(ids[:, :start], 0) if rows else None
            for column in range(start, length):
                active = (lengths <= column) & ~ended  # rows whose completion takes this column
                which = active.nonzero().squeeze(1)
                if which.numel():
                    position = column - lengths[which]
                    token = choose(logits[which], which, position)
                    ids[which, column] = token
                    generated[which] += 1
                    ended[which] = torch.isin(token, ends) | (position == max_new_tokens - 1)
                if bool(ended.all()) or column == length - 1:
                    break
                logits = steps(ids[:, : column + 1], column)
        finally:
            steps.close()
    return _completions(ids, lengths, generated, eos_ids, pad_id, prompt_ids, streamer)


def _completions(ids, lengths, generated, eos_ids, pad_id, prompt_ids, streamer) -> Completions:
    """Each row's completion from its own column on, right-padded to the longest, as ``generate``'s output."""
    width = int(generated.max()) if generated.numel() else 0
    offsets = torch.arange(width, device=ids.device)
    columns = (lengths[:, None] + offsets[None, :]).clamp_max(ids.shape[1] - 1)
    completion = ids.gather(1, columns).masked_fill(offsets[None, :] >= generated[:, None], pad_id)
    mask, truncated = completion_mask(completion, eos_ids)
    if streamer is not None:
        streamer.put(prompt_ids)
        for j in range(width):
            streamer.put(completion[:, j].masked_fill(~mask[:, j], pad_id))
        streamer.end()
    return Completions(completion.masked_fill(~mask, pad_id), mask, truncated)
