"""Coupling statistics of the rhythm: peaks, "an FAI peak follows a WAAD peak", and token entropy.

Definitions (docs/metrics.md):

* A **peak** of a signal ``v`` (``[*batch, N]``, NaN where undefined) is a position ``t`` where ``v[t]`` is
  finite, among ``top_fraction(v, top)`` (default the top 20%), and a local maximum: ``v[t] > v[t-1]``
  and ``v[t] >= v[t+1]``, a neighbour that is NaN or outside the sequence counting as lower. (The first
  position of a plateau is the peak.)
* A position ``t`` is **followed** by an FAI peak when some FAI peak lies in ``[t, t + k]`` (coincides
  or follows within ``k`` tokens).
* The **coupling rate** is the fraction of WAAD peaks that are followed by an FAI peak; the **baseline**
  is the same fraction over every response position, which is exactly the expected rate of WAAD peaks
  placed at uniformly shuffled response positions (no random draw needed); the **lift** is their ratio.
* The **token entropy** of response token ``t`` is the entropy of the distribution it was sampled from:
  the softmax of logits row ``t - 1``.
"""

from __future__ import annotations

import torch

from ._checks import check_fraction, check_positive_int
from .attention import as_float
from .tokens import top_fraction


def local_peaks(values: torch.Tensor, top: float = 0.2) -> torch.Tensor:
    """Peaks of a signal: local maxima among its ``top`` fraction of finite values.

    Args:
        values: ``[*batch, N]``, NaN where undefined.
        top: fraction in (0, 1].

    Returns:
        ``[*batch, N]`` bool.
    """
    top = check_fraction(top, "top")
    v = as_float(values)
    low = torch.where(torch.isfinite(v), v, torch.full_like(v, -float("inf")))
    left = torch.nn.functional.pad(low[..., :-1], (1, 0), value=-float("inf"))
    right = torch.nn.functional.pad(low[..., 1:], (0, 1), value=-float("inf"))
    return top_fraction(v, top) & (low > left) & (low >= right)


def followed_by(targets: torch.Tensor, k: int) -> torch.Tensor:
    """``out[t]`` is True when some ``targets[u]`` is True for ``u`` in ``[t, t + k]``.

    Args:
        targets: ``[*batch, N]`` bool.
        k: look-ahead in tokens (>= 0).

    Returns:
        ``[*batch, N]`` bool.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k={k!r} is invalid: the look-ahead must be an integer >= 0.")
    n = targets.shape[-1]
    csum = torch.nn.functional.pad(targets.long().cumsum(-1), (1, 0))  # csum[i] = count before i
    t = torch.arange(n, device=targets.device)
    return (csum[..., (t + k + 1).clamp(max=n)] - csum[..., t]) > 0


def coupling_counts(
    waad: torch.Tensor, fai: torch.Tensor, response_mask: torch.Tensor, k: int = 3, top: float = 0.2
) -> dict[str, torch.Tensor]:
    """Counts behind the coupling rate and its shuffled baseline, summed over the batch.

    Args:
        waad: ``[B, N]``; fai: ``[B, N]``; response_mask: ``[B, N]`` bool.
        k: look-ahead in tokens. top: peak fraction.

    Returns:
        float64 scalars ``peak_hits`` (WAAD peaks followed by an FAI peak), ``peaks`` (WAAD peaks),
        ``base_hits`` (response positions followed by an FAI peak) and ``positions`` (response positions).
    """
    mask = response_mask.bool()
    waad_peaks = local_peaks(waad, top) & mask
    hit = followed_by(local_peaks(fai, top) & mask, k)
    return {
        "peak_hits": (hit & waad_peaks).sum().double(),
        "peaks": waad_peaks.sum().double(),
        "base_hits": (hit & mask).sum().double(),
        "positions": mask.sum().double(),
    }


def logits_entropy(logits: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Entropy ``-sum_v p(v) log p(v)`` of ``softmax(logits)`` for every row.

    Args:
        logits: ``[B, N, V]``.
        chunk: positions per step (bounds the float32 copy to ``B x chunk x V``).

    Returns:
        ``[B, N]`` float32.
    """
    chunk = check_positive_int(chunk, "chunk")
    out = torch.empty(logits.shape[:2], device=logits.device)
    for c0 in range(0, logits.shape[1], chunk):
        logp = torch.log_softmax(logits[:, c0 : c0 + chunk].float(), dim=-1)
        out[:, c0 : c0 + chunk] = -(logp.exp() * logp).sum(-1)
    return out


def token_entropy(logits: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Entropy of the next-token distribution, aligned to the token it produced.

    ``H[t] = -sum_v p_{t-1}(v) log p_{t-1}(v)`` with ``p_{t-1} = softmax(logits[t - 1])``; ``H[0]`` is NaN.

    Args:
        logits: ``[B, N, V]`` logits of a forward pass over the sequence.

    Returns:
        ``[B, N]`` float32.
    """
    nan = torch.full((logits.shape[0], 1), float("nan"), device=logits.device)
    return torch.cat([nan, logits_entropy(logits[:, :-1], chunk)], dim=1)
