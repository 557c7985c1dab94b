"""Attention probabilities one block of query rows at a time, and what the capture keeps of them.

A layer's attention function hands over ``query [B, H, N, D]`` and ``key [B, H_kv, N, D]`` (after RoPE and
QK-norm). ``BlockAttention`` recomputes ``softmax(q k^T * scale + mask)`` for rows ``[r0, r1)`` only,
in float32, so the largest tensor is ``[B, H, block, r1]``. Two recorders consume the blocks:

* ``StatsRecorder`` reduces them at once to per-head statistics of the rhythm (the capture);
* ``MapRecorder`` keeps a window ``[start, stop) x [start, stop)`` of the local- and global-head
  mean maps (for pictures).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..functional.attention import fai_counts
from ..functional.trace import RhythmTrace, trace_from_head_stats


class BlockAttention:
    """Recomputes the attention probabilities of one layer, a block of query rows at a time.

    Args:
        query: ``[B, H, N, D]``.
        key: ``[B, H_kv, N, D]``; query head ``h`` reads key head ``h // (H / H_kv)``.
        mask: what the model's mask function gave: ``None`` (plain causal), a 2-D padding mask, or a 4-D
            bool (True = attend) or additive float mask ``[B or 1, 1 or H, N, N]``.
        key_mask: ``[B, N]`` bool, False at padding.
        scaling: the layer's softmax scale (``D ** -0.5`` when None).
        softcap: logit soft-capping of the layer, if any.
        sliding_window: the layer's window, applied when the mask does not already carry it.
        stop: rows and keys beyond ``stop`` are never needed.
    """

    def __init__(
        self, layer, query, key, mask, key_mask, *, scaling=None, softcap=None, sliding_window=None, stop=None
    ):
        b, h, n, d = query.shape
        h_kv = key.shape[1]
        if h % h_kv:
            raise RuntimeError(f"layer {layer}: {h} query heads are not a multiple of {h_kv} key heads.")
        if key.shape[2] != n:
            raise RuntimeError(
                f"layer {layer}: {n} queries but {key.shape[2]} keys; capture needs a full forward without a "
                "KV cache (call the model with use_cache=False and no past_key_values)."
            )
        stop = n if stop is None else stop
        self.shape = (b, h, h_kv, d)
        self.query = query
        self.key32 = key[:, :, :stop].float().contiguous()  # cast (and lay out) once per layer, not per block
        self.mask = mask if isinstance(mask, torch.Tensor) and mask.ndim == 4 else None
        self.key_mask = key_mask.to(query.device)
        self.padded = not bool(self.key_mask.all())
        self.scale = float(scaling) if scaling is not None else d**-0.5
        self.softcap = softcap
        self.sliding_window = sliding_window
        self.pos = torch.arange(stop, device=query.device)

    def offsets(self, r0: int, r1: int) -> torch.Tensor:
        """``[r1 - r0, r1]`` int matrix of ``t - s`` for rows ``t in [r0, r1)`` and keys ``s < r1``."""
        return self.pos[r0:r1, None] - self.pos[None, :r1]

    def __call__(self, r0: int, r1: int) -> torch.Tensor:
        """``[B, H, r1 - r0, r1]`` float32 probabilities of rows ``[r0, r1)`` over keys ``[0, r1)``."""
        b, h, h_kv, d = self.shape
        nb = r1 - r0
        # Grouped-query without repeating keys: [B, H_kv, g * nb, D] x [B, H_kv, D, r1].
        q = (self.query[:, :, r0:r1].float() * self.scale).reshape(
            b, h_kv, (h // h_kv) * nb, d
        )  # never in place: query is the model's
        scores = torch.matmul(q, self.key32[:, :, :r1].transpose(-1, -2)).view(b, h, nb, r1)
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap).mul_(self.softcap)
        neg = -float("inf")
        if self.mask is not None:
            block_mask = self.mask[..., r0:r1, :r1]
            if block_mask.dtype == torch.bool:
                scores.masked_fill_(~block_mask, neg)
            else:
                scores.add_(block_mask.to(scores.dtype))
        else:  # None (plain causal) or a 2-D padding mask: apply padding and window ourselves
            if self.padded:
                scores.masked_fill_(~self.key_mask[:, None, None, :r1], neg)
            if self.sliding_window is not None:
                scores.masked_fill_(self.offsets(r0, r1) >= self.sliding_window, neg)
        # Causality, always (SDPA gets mask=None when nothing is padded): only keys in [r0, r1) can be future.
        scores[..., r0:r1].masked_fill_(torch.ones(nb, nb, dtype=torch.bool, device=scores.device).triu(1), neg)
        if self.padded:  # padding query rows would be all -inf -> NaN; give them a finite row (weight 0 later)
            scores.masked_fill_(~self.key_mask[:, None, r0:r1, None], 0.0)
        return torch.softmax(scores, dim=-1)


_ONE_FORWARD = (
    "run exactly one full forward over the same [B, N] batch inside the block (use_cache=False, no "
    "past_key_values, no generate inside the block); open a new rhythm_capture block for each forward."
)


def check_lengths(layer: int, query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor) -> None:
    """Refuse a layer call over another batch or length than the ``[B, N]`` masks (a prefill of ``N - 1`` tokens, a
    decode step of ``generate``): it would not line up with the masks. O(1), no sync.

    Raises:
        RuntimeError: with the shapes seen and expected, and the fix.
    """
    b, n = key_mask.shape
    if query.shape[0] != b or query.shape[2] != n or key.shape[2] != n:
        raise RuntimeError(
            f"layer {layer} ran {query.shape[2]} queries over {key.shape[2]} keys for {query.shape[0]} sequences, "
            f"but the masks given to the capture are [{b}, {n}]: {_ONE_FORWARD}"
        )


def admit(layer: int, query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor, seen: set[int]) -> None:
    """Refuse a layer call that is not part of the one full ``[B, N]`` forward a capture measures; O(1), no sync.

    A forward of other length would not line up with the masks ([`check_lengths`][check_lengths]); a second forward
    would add its sums to the first one's and double head distances and FAI.

    Raises:
        RuntimeError: with the shapes seen and expected, and the fix.
    """
    check_lengths(layer, query, key, key_mask)
    if layer in seen:
        raise RuntimeError(
            f"second forward of layer {layer} inside one rhythm_capture block: its statistics would add to the "
            f"first forward's and double head distances, WAAD and FAI: {_ONE_FORWARD}"
        )
    seen.add(layer)


def _layer_attention(layer, query, key, mask, *, key_mask, scaling, kwargs, stop) -> BlockAttention:
    """The layer's [`BlockAttention`][BlockAttention] with the options its attention call was given."""
    options = dict(softcap=kwargs.get("softcap"), sliding_window=kwargs.get("sliding_window"))
    return BlockAttention(layer, query, key, mask, key_mask, scaling=scaling, stop=stop, **options)


@dataclass
class StatsRecorder:
    """Per-head statistics of the rhythm, accumulated block by block while the model runs.

    For each selected layer ``l`` and head ``h``, with ``P`` the probabilities and ``R`` the response rows:

    * ``head_dist[b, l, h] = sum_{t in R} sum_s P[t, s] (t - s)``;
    * ``head_waad[b, l, h, t] = sum_s P[t, s] min(t - s, W)``;
    * ``head_fai[b, l, h, s] = sum_{t in R, lo <= t - s <= hi} P[t, s]``.
    """

    slots: dict[int, int]  # layer index -> position among the selected layers
    response_mask: torch.Tensor  # [B, N] bool
    key_mask: torch.Tensor  # [B, N] bool, False at padding
    window: int
    horizon: tuple[int, int]
    block_size: int
    head_dist: torch.Tensor | None = None  # [B, L_sel, H] float64
    head_waad: torch.Tensor | None = None  # [B, L_sel, H, N]
    head_fai: torch.Tensor | None = None  # [B, L_sel, H, N]
    seen: set[int] = field(default_factory=set)

    def observe(self, layer: int, query: torch.Tensor, key: torch.Tensor, mask, scaling, kwargs) -> None:
        """Reduce the attention of one layer (see ``BlockAttention`` for the arguments)."""
        admit(layer, query, key, self.key_mask, self.seen)
        b, h, n, _ = query.shape
        dev = query.device
        if self.head_dist is None:
            n_sel = len(self.slots)
            self.head_dist = torch.zeros(b, n_sel, h, device=dev, dtype=torch.float64)
            self.head_waad = torch.zeros(b, n_sel, h, n, device=dev)
            self.head_fai = torch.zeros(b, n_sel, h, n, device=dev)
        slot = self.slots[layer]
        resp = self.response_mask.to(dev)
        rows = resp.any(0).nonzero()
        if rows.numel() == 0:
            return
        # Every quantity reads response rows only: skip the prompt rows before the first response token.
        first, last = int(rows[0]), int(rows[-1]) + 1
        attn = _layer_attention(
            layer, query, key, mask, key_mask=self.key_mask, scaling=scaling, kwargs=kwargs, stop=last
        )
        lo, hi = self.horizon
        w = self.window
        for r0 in range(first, last, self.block_size):
            r1 = min(r0 + self.block_size, last)
            probs = attn(r0, r1)  # [B, H, nb, r1]
            offset = attn.offsets(r0, r1)
            row_w = resp[:, r0:r1].float()  # [B, nb]

            # Row distance sum_s P (t - s) = sum_s P (r0 - s) + (t - r0), rows summing to 1 (no cancellation).
            rel = (r0 - attn.pos[:r1]).float()
            dist = torch.matmul(probs, rel) + (attn.pos[r0:r1] - r0).float()
            self.head_dist[:, slot] += (dist * row_w[:, None]).sum(-1, dtype=torch.float64)

            # WAAD row sum_s P min(t - s, W) = W - sum_{0 <= t-s < W} P (W - (t - s)).
            c0 = max(0, r0 - w + 1)
            near = (w - offset[:, c0:]).clamp(0, w) * (offset[:, c0:] >= 0)
            self.head_waad[:, slot, :, r0:r1] = w - (probs[..., c0:] * near).sum(-1)

            # FAI column sums over response rows t with lo <= t - s <= hi: columns [r0 - hi, r1 - lo).
            c0, c1 = max(0, r0 - hi), max(0, r1 - lo)
            if c1 > c0:  # pragma: no mutate (>=: c1 == c0 adds an empty slice, a no-op)
                band = ((offset[:, c0:c1] >= lo) & (offset[:, c0:c1] <= hi)).float()
                col = torch.matmul(row_w[:, None, None, :], probs[..., c0:c1] * band)  # [B, H, 1, c]
                self.head_fai[:, slot, :, c0:c1] += col.squeeze(-2)

    def trace(self, layers: list[int], head_fraction: float, q: float, look_back: int) -> RhythmTrace:
        """Normalise the sums and assemble the [`RhythmTrace`][RhythmTrace]."""
        resp = self.response_mask.to(self.head_waad.device)
        nan = float("nan")
        count = resp.sum(-1).float()[:, None, None]
        dist = self.head_dist.float()
        distance = torch.where(count > 0, dist / count.clamp_min(1), torch.full_like(dist, nan))
        rows = resp[:, None, None, :]
        head_waad = torch.where(rows, self.head_waad, torch.full_like(self.head_waad, nan))
        counts = fai_counts(resp, self.horizon)[:, None, None, :]
        head_fai = torch.where(
            rows & (counts > 0), self.head_fai / counts.clamp_min(1), torch.full_like(self.head_fai, nan)
        )
        return trace_from_head_stats(
            distance, head_waad, head_fai, resp, layers, head_fraction=head_fraction, q=q, look_back=look_back
        )


@dataclass
class MapRecorder:
    """A window of the local- and global-head mean maps, for pictures.

    ``maps[name][b] = mean over the heads of group name of P[start:stop, start:stop]`` (``[B, w, w]``), with
    the heads given as flat indices ``slot * H + h`` into the selected layers (as in [`RhythmTrace`][RhythmTrace]).
    """

    slots: dict[int, int]
    key_mask: torch.Tensor
    groups: dict[str, torch.Tensor]  # name -> [B, k] flat head indices
    start: int
    stop: int
    block_size: int
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)

    def observe(self, layer: int, query: torch.Tensor, key: torch.Tensor, mask, scaling, kwargs) -> None:
        admit(layer, query, key, self.key_mask, self.seen)
        b, h = query.shape[:2]
        slot = self.slots[layer]
        attn = _layer_attention(
            layer, query, key, mask, key_mask=self.key_mask, scaling=scaling, kwargs=kwargs, stop=self.stop
        )
        width = self.stop - self.start
        weights = {}
        for name, heads in self.groups.items():
            heads = heads.to(query.device)
            # Weight of every head of this layer in the group mean: (times it is in the group) / k.
            in_layer = (heads // h) == slot
            weight = torch.zeros(b, h, device=query.device)
            weights[name] = weight.scatter_add_(1, (heads % h) * in_layer, in_layer.float()) / heads.shape[1]
            self.sums.setdefault(name, torch.zeros(b, width, width, device=query.device))
        for r0 in range(self.start, self.stop, self.block_size):
            r1 = min(r0 + self.block_size, self.stop)
            probs = attn(r0, r1)[..., self.start :]  # [B, H, nb, r1 - start]
            for name, weight in weights.items():
                part = torch.einsum("bh,bhtc->btc", weight, probs)
                self.sums[name][:, r0 - self.start : r1 - self.start, : r1 - self.start] += part
