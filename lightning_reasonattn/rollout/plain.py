"""Plain PyTorch causal LMs in a rollout: rows moved to the left, so a model that takes no padding mask sees none.

A *plain* model is any ``torch.nn.Module`` that is not a transformers model: ``model(input_ids [B, N])`` returns
logits ``[B, N, V]``, an output with ``.logits``, or a tuple whose first item is the logits (nanoGPT's ``(logits,
loss)``); it is called with no attention mask and no position ids (``attention_mask=`` and ``position_ids=`` are
passed only where its ``forward`` names them, see
[`model_call`][lightning_reasonattn.capture.modules.model_call]). Its positions are its columns, so a left-padded
row would put its first real token at a later position and let every real token attend to the padding before it.

[`Aligned`][lightning_reasonattn.rollout.plain.Aligned] therefore moves each row's real tokens to the front, in
order (``[B, N]`` -> ``[B, N']``, ``N'`` = the longest row): every row starts at position 0 and its padding comes
after its last real token, where a causal model never looks. What the forward gives is mapped back to the batch's
own ``[B, N]`` columns, so callers keep the rollout layout (``[prompt, left-padded to P | completion,
right-padded to T]``). The decode loop ([`lightning_reasonattn.rollout.decode`][lightning_reasonattn.rollout.decode])
and the measurement ([`measure`][lightning_reasonattn.rollout.logprobs.measure]) both go through it.
"""

from __future__ import annotations

import dataclasses

import torch

from ..capture.modules import logits_of, model_call
from ..functional.trace import RhythmTrace

# RhythmTrace fields over the sequence's columns, and what a padding column holds.
_TRACE_COLUMNS = {"waad": float("nan"), "fai": float("nan"), "waad_jumps": float("nan")}
_TRACE_FLAGS = ("preplan", "anchor", "dominated", "intro")


class Aligned:
    """A batch's real tokens moved to the front of each row, and the way back.

    Args:
        attention_mask: ``[B, N]``, 1 at real tokens, 0 at padding (anywhere: before, between or after them).

    Attributes:
        mask: ``[B, N']`` bool, the real tokens of the aligned rows (a prefix of each row).
        lengths: ``[B]`` int64, real tokens per row.
        order: ``[B, N']`` int64, the batch column each aligned column comes from.
        column: ``[B, N]`` int64, the aligned column of each batch column (of its real tokens; padding columns
            point past the row's real tokens).
    """

    def __init__(self, attention_mask: torch.Tensor):
        real = attention_mask.bool()
        self.lengths = real.sum(1)
        width = int(self.lengths.max()) if real.numel() else 0
        # real tokens first, each group in its own order (a stable sort of "is padding")
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)
        self.column = torch.argsort(order, dim=1)
        self.order = order[:, :width]
        self.mask = torch.arange(width, device=real.device)[None, :] < self.lengths[:, None]
        self._real = real

    def take(self, values: torch.Tensor, fill) -> torch.Tensor:
        """``[B, N, ...]`` batch values -> ``[B, N', ...]`` aligned, ``fill`` after each row's real tokens."""
        index = self.order.reshape(self.order.shape + (1,) * (values.ndim - 2)).expand(-1, -1, *values.shape[2:])
        taken = values.gather(1, index)
        return taken.masked_fill(~self.mask.reshape(self.mask.shape + (1,) * (values.ndim - 2)), fill)

    def back(self, values: torch.Tensor, fill) -> torch.Tensor:
        """``[B, N', ...]`` aligned values -> ``[B, N, ...]`` batch columns, ``fill`` at the batch's padding."""
        index = self.column.clamp_max(values.shape[1] - 1)
        index = index.reshape(index.shape + (1,) * (values.ndim - 2)).expand(-1, -1, *values.shape[2:])
        out = values.gather(1, index)
        return out.masked_fill(~self._real.reshape(self._real.shape + (1,) * (values.ndim - 2)), fill)

    def trace_back(self, trace: RhythmTrace, response_mask: torch.Tensor) -> RhythmTrace:
        """The [`RhythmTrace`][lightning_reasonattn.RhythmTrace] of the aligned rows over the batch's columns:
        ``[B, N']`` fields mapped back (NaN or False at padding), per-sequence fields (heads, layers) kept."""
        moved = {name: self.back(getattr(trace, name), fill) for name, fill in _TRACE_COLUMNS.items()}
        moved.update({name: self.back(getattr(trace, name), False) for name in _TRACE_FLAGS})
        return dataclasses.replace(trace, **moved, response_mask=response_mask.bool())


def check_plain_logits(model: torch.nn.Module, outputs, ids: torch.Tensor) -> torch.Tensor:
    """The ``[B, N, V]`` logits in ``outputs`` of ``model(ids)``, or a ``TypeError`` that says what was returned."""
    logits = logits_of(outputs)
    if logits is None or logits.ndim != 3 or tuple(logits.shape[:2]) != tuple(ids.shape):
        got = tuple(logits.shape) if logits is not None else type(outputs).__name__
        raise TypeError(
            f"{type(model).__name__}(input_ids of shape {tuple(ids.shape)}) returned {got}: a plain model must "
            "return logits [B, N, vocab], an output with .logits, or a tuple whose first item is the logits."
        )
    return logits


def plain_completion_logits(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``([B, T, V] logits / temperature, [B, T] bool real)`` that predict the ``T = width`` last columns.

    One forward of the aligned rows (see [`Aligned`][lightning_reasonattn.rollout.plain.Aligned]); the logits of
    completion token ``j`` come from the aligned column just before it. ``real`` is False at the completion's
    padding, whose logits are those of column 0 (finite, to be masked by the caller).

    Raises:
        ValueError: a row with a real completion token and no real token before it (nothing predicts it).
    """
    aligned = Aligned(attention_mask)
    ids = aligned.take(input_ids, 0)
    mask = aligned.mask.long()
    logits = check_plain_logits(model, model_call(model)(ids, mask, (mask.cumsum(-1) - 1).clamp_min(0)), ids)
    real = attention_mask[:, -width:].bool()
    source = aligned.column[:, -width:] - 1  # the aligned column that predicts each completion column
    if bool((real & (source < 0)).any()):
        raise ValueError(
            "a row's first real token is a completion token, so nothing predicts it: a plain model needs at least "
            "one prompt token in each row."
        )
    source = source.masked_fill(~real, 0)
    picked = logits.gather(1, source[..., None].expand(-1, -1, logits.shape[-1]))
    return picked / temperature, real
