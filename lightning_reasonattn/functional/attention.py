"""Attention-map math of the rhythm: layer choice, head distances, the local/global split, WAAD and FAI.

Conventions (see docs/rhythm.md):

* ``attn`` is a causal, row-stochastic map ``A[t, s]`` (query ``t``, key ``s <= t``) with shape
  ``[*batch, *heads, N, N]``; ``response_mask`` is ``[*batch, N]`` (True at response tokens). Head
  dimensions, if any, sit between the batch dimensions and the two token dimensions.
* Every reduction runs in float32 whatever the dtype of ``attn`` (float64 input stays float64).
* Positions outside the response come back as NaN.
"""

from __future__ import annotations

import warnings

import torch

from . import defaults
from ._checks import as_int, check_fraction, check_horizon, check_window


def select_layers(num_layers: int, layers: str | int | list[int] | tuple[int, ...] = defaults.LAYERS) -> list[int]:
    """Resolve a layer selection to sorted 0-based layer indices.

    ``"middle"``: ``round(linspace(L // 3, 2 * L // 3, 5))`` with duplicates dropped (round half to even,
    as ``torch.round``); ``"all"``: every layer; a list (or one int): those indices, negative ones counted
    from the end.

    Raises:
        ValueError: an unknown name, an empty list or an index outside ``[-L, L)``.
    """
    if isinstance(layers, str):
        if layers == "middle":
            lo, hi = int(num_layers) // 3, 2 * int(num_layers) // 3
            # linspace(lo, hi, 5) is lo + (hi - lo) * i / 4: quarters, exact in floats; round() is half to even.
            return sorted({round(lo + (hi - lo) * i / 4) for i in range(5)})
        if layers == "all":
            return list(range(num_layers))
        raise ValueError(f"layers={layers!r} is invalid: use 'middle', 'all' or a list of layer indices.")
    try:
        chosen = list(layers)
    except TypeError:
        chosen = [layers]  # one index, or anything else not iterable: refused below, by name
    if not chosen:
        raise ValueError("layers=[] selects no layer: use 'middle', 'all' or a non-empty list of indices.")
    out = set()
    for idx in chosen:
        i = as_int(idx)
        if i is None or not -num_layers <= i < num_layers:
            raise ValueError(
                f"layer index {idx!r} is out of range for a model with {num_layers} layers: "
                f"use integers in [0, {num_layers - 1}] (or negative ones from the end)."
            )
        out.add(i % num_layers)
    return sorted(out)


def _row_mask(response_mask: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape ``[*batch, N]`` to broadcast against ``[*batch, *heads, N]`` (``ndim`` dims)."""
    extra = ndim - response_mask.ndim
    return response_mask.reshape(*response_mask.shape[:-1], *([1] * extra), response_mask.shape[-1])


def _offsets(n: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[N, N]`` matrix of ``t - s`` (query row minus key column)."""
    pos = torch.arange(n, device=device, dtype=dtype)
    return pos[:, None] - pos[None, :]


def _check_maps(attn: torch.Tensor, response_mask: torch.Tensor) -> None:
    """Refuse maps that are not ``[..., N, N]`` over the mask's ``N`` tokens: one query row (a decoding step's map,
    ``[..., 1, N]``) or a mask of one token would broadcast into a result of the right shape and wrong values."""
    if attn.ndim < 2 or attn.shape[-2] != attn.shape[-1] or response_mask.shape[-1:] != attn.shape[-1:]:
        raise ValueError(
            f"attn has shape {tuple(attn.shape)} and response_mask {tuple(response_mask.shape)}: expected "
            "[*batch, *heads, N, N] maps (every query row of the sequence: a forward without a KV cache, "
            "use_cache=False) and a [*batch, N] mask over the same N tokens."
        )


def as_float(x: torch.Tensor) -> torch.Tensor:
    """float32 for reductions; float64 is kept (useful for references)."""
    return x if x.dtype == torch.float64 else x.float()


def head_backward_distance(attn: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Mean backward attention distance of each head over the response.

    ``d = mean_{t in R} sum_{s <= t} A[t, s] * (t - s)``

    Args:
        attn: ``[*batch, *heads, N, N]`` causal maps.
        response_mask: ``[*batch, N]`` bool.

    Returns:
        ``[*batch, *heads]`` float32; NaN for a sequence with no response token.
    """
    _check_maps(attn, response_mask)
    a = as_float(attn)
    n = a.shape[-1]
    rows = (a * _offsets(n, a.device, a.dtype).clamp_min(0)).sum(-1)  # [*batch, *heads, N]
    mask = _row_mask(response_mask.bool(), rows.ndim)  # bool: the products and the count take rows' float dtype
    return (rows * mask).sum(-1) / mask.sum(-1)


def split_heads(distances: torch.Tensor, fraction: float = defaults.HEAD_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a pool of heads into local (short-distance) and global (long-distance) heads.

    The pool is every head of the selected layers, flattened to ``P = L_sel * H`` in layer-major order
    (flat index ``l * H + h``). Heads are sorted by distance (stable: ties keep the lower flat index
    first); ``k = max(1, round(fraction * P))`` (Python's round, half to even). Local heads are the first
    ``k`` of that order, global heads the last ``k``.

    Args:
        distances: ``[B, L_sel, H]`` (or ``[B, P]``) mean backward distances.
        fraction: share of the pool in each group, in (0, 1].

    Returns:
        ``(local_heads, global_heads)``, each ``[B, k]`` int64 flat indices in ascending-distance order.
    """
    fraction = check_fraction(fraction, "head_fraction")
    flat = distances.reshape(distances.shape[0], -1)
    pool = flat.shape[1]
    k = max(1, round(fraction * pool))
    order = torch.sort(flat, dim=-1, stable=True).indices
    return order[:, :k], order[:, pool - k :]


def group_mean(per_head: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Average per-head quantities over a head group.

    Every quantity of the rhythm is linear in the map, so the mean of per-head values equals the value of
    the mean map: no ``N x N`` group map is ever needed.

    Args:
        per_head: ``[B, P, *rest]`` per-head values, heads flattened layer-major (``l * H + h``).
        heads: ``[B, k]`` flat head indices (from [`split_heads`][split_heads]).

    Returns:
        ``[B, *rest]``: the mean over the ``k`` heads of each sequence.
    """
    rest = per_head.shape[2:]
    idx = heads.reshape(*heads.shape, *([1] * len(rest))).expand(-1, -1, *rest)
    return per_head.gather(1, idx).mean(1)


def waad(attn: torch.Tensor, response_mask: torch.Tensor, window: int = defaults.WINDOW) -> torch.Tensor:
    """Windowed Average Attention Distance.

    ``WAAD[t] = sum_{s <= t} A[t, s] * min(t - s, W)`` for ``t`` in the response, NaN elsewhere.

    Args:
        attn: ``[*batch, *heads, N, N]`` causal maps (usually the local-head mean ``A_loc``).
        response_mask: ``[*batch, N]`` bool.
        window: ``W >= 1``.

    Returns:
        ``[*batch, *heads, N]`` float32 in ``[0, W]`` on the response.
    """
    _check_maps(attn, response_mask)
    window = check_window(window)
    a = as_float(attn)
    n = a.shape[-1]
    clipped = _offsets(n, a.device, a.dtype).clamp(0, window)  # zero above the diagonal: causal by construction
    rows = (a * clipped).sum(-1)
    mask = _row_mask(response_mask.bool(), rows.ndim)
    return torch.where(mask, rows, torch.full_like(rows, torch.nan))


def horizon_band(n: int, horizon: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """``[N, N]`` bool, True where ``lo <= t - s <= hi`` (row ``t``, column ``s``)."""
    lo, hi = check_horizon(horizon)
    off = _offsets(n, device or torch.device("cpu"))
    return (off >= lo) & (off <= hi)


def fai_counts(response_mask: torch.Tensor, horizon: tuple[int, int] = defaults.HORIZON) -> torch.Tensor:
    """``|T(s)|``: how many response rows ``t`` lie in ``[s + lo, s + hi]``, for every column ``s``.

    Computed with a prefix sum over the response mask, so it costs ``O(N)``, not ``O(N^2)``.

    Args:
        response_mask: ``[*batch, N]`` bool.

    Returns:
        ``[*batch, N]`` float32 counts.
    """
    lo, hi = check_horizon(horizon)
    r = response_mask.float()
    n = r.shape[-1]
    csum = torch.nn.functional.pad(r.cumsum(-1), (1, 0))  # csum[i] = number of response rows < i
    s = torch.arange(n, device=r.device)
    start = (s + lo).clamp(max=n)
    stop = (s + hi + 1).clamp(max=n)
    counts = csum[..., stop] - csum[..., start]
    if not _WARNED_SHORT_RESPONSES:
        _warn_if_no_fai(response_mask.bool(), counts, (lo, hi))
    return counts


_WARNED_SHORT_RESPONSES = False  # the warning below comes once per process


def _warn_if_no_fai(response_mask: torch.Tensor, counts: torch.Tensor, horizon: tuple[int, int]) -> None:
    """Warn (once) when FAI is undefined at every response token: every response is <= ``lo`` tokens long.

    One device sync per call until it has warned, so call it once per batch (at the end of a capture).
    """
    global _WARNED_SHORT_RESPONSES
    if bool(((counts > 0) & response_mask).any()) or not bool(response_mask.any()):
        return  # the usual case costs one sync
    longest = int(response_mask.sum(-1).max())
    _WARNED_SHORT_RESPONSES = True
    lo, hi = horizon
    fit = (longest // 10, 4 * longest // 5)  # lo <= hi, and lo < longest: FAI is defined
    warnings.warn(
        f"horizon={horizon!r} is longer than every response (the longest response has {longest} tokens): FAI is "
        f"NaN at every token and there are no anchors, since FAI[s] needs a response token at s + lo "
        f"(a response of at least lo + 1 = {lo + 1} tokens). Pass a shorter horizon, e.g. horizon={fit!r} for "
        f"{longest}-token responses. (This warning is shown once per process.)",
        UserWarning,
        stacklevel=3,
    )


def fai(attn: torch.Tensor, response_mask: torch.Tensor, horizon: tuple[int, int] = defaults.HORIZON) -> torch.Tensor:
    """Future Attention Influence.

    ``T(s) = {t in R : s + lo <= t <= min(N - 1, s + hi)}``;
    ``FAI[s] = mean_{t in T(s)} A[t, s]`` for ``s`` in the response; NaN where ``T(s)`` is empty (the last
    ``lo`` response tokens) and outside the response.

    Args:
        attn: ``[*batch, *heads, N, N]`` causal maps (usually the global-head mean ``A_glob``).
        response_mask: ``[*batch, N]`` bool.
        horizon: ``(lo, hi)`` with ``0 <= lo <= hi``.

    Returns:
        ``[*batch, *heads, N]`` float32.
    """
    _check_maps(attn, response_mask)
    a = as_float(attn)
    n = a.shape[-1]
    mask = response_mask.bool()
    band = horizon_band(n, horizon, a.device)  # bool: a * band is a's float dtype, at a quarter of float32's memory
    rows = _row_mask(mask, a.ndim - 1).unsqueeze(-1)  # [*batch, 1.., N, 1]: which rows count
    sums = (a * band * rows).sum(-2)  # column sums over the horizon rows
    counts = _row_mask(fai_counts(mask, horizon), sums.ndim)
    cols = _row_mask(mask, sums.ndim)
    out = sums / counts.clamp_min(1)
    return torch.where(cols & (counts > 0), out, torch.full_like(out, torch.nan))
