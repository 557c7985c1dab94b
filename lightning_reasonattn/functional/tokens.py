"""Token selection of the rhythm: WAAD jumps, top fractions, preplan, anchor, dominated and introductory tokens.

Inputs are per-token signals ``[*batch, N]`` that are NaN outside the response (as returned by
[`waad`][lightning_reasonattn.functional.waad] and [`fai`][lightning_reasonattn.functional.fai]);
outputs are bool masks of the same shape.
"""

from __future__ import annotations

import math

import torch

from ..deprecation import renamed_keywords
from . import defaults
from ._checks import check_fraction, check_positive_int
from .attention import as_float


def waad_jumps(waad: torch.Tensor) -> torch.Tensor:
    """``delta[t] = |WAAD[t] - WAAD[t + 1]|`` where both are defined (``t, t+1`` in the response), NaN elsewhere.

    Args:
        waad: ``[*batch, N]``, NaN outside the response.

    Returns:
        ``[*batch, N]`` float32; the last position is always NaN.
    """
    w = as_float(waad)
    nxt = torch.nn.functional.pad(w[..., 1:], (0, 1), value=torch.nan)
    return (w - nxt).abs()


def top_count(n: torch.Tensor | int, q: float) -> torch.Tensor | int:
    """``ceil(q * n)``, robust to float noise (``0.7 * 10`` is 7, not 8)."""
    if isinstance(n, torch.Tensor):
        return torch.ceil(torch.round(n.double() * q, decimals=6)).long()
    return math.ceil(round(n * q, 6))


def top_fraction(values: torch.Tensor, q: float = defaults.Q) -> torch.Tensor:
    """The ``ceil(q * n)`` largest finite values among the ``n`` finite ones of each row.

    Ties are broken stably: the earlier position wins. Non-finite entries (NaN, +-inf) are never selected.

    Args:
        values: ``[*batch, N]``.
        q: fraction in (0, 1].

    Returns:
        ``[*batch, N]`` bool.
    """
    q = check_fraction(q, "q")
    v = values.float()
    finite = torch.isfinite(v)
    keyed = torch.where(finite, v, torch.full_like(v, -torch.inf))
    order = torch.sort(keyed, dim=-1, descending=True, stable=True).indices
    k = top_count(finite.sum(-1, keepdim=True), q)
    ranks = torch.arange(v.shape[-1], device=v.device).expand_as(order)
    chosen = torch.zeros_like(finite)
    return chosen.scatter(-1, order, ranks < k)


def lower_median(values: torch.Tensor) -> torch.Tensor:
    """Median of the finite values of each row, the lower middle one for an even count (as ``torch.median``).

    Args:
        values: ``[*batch, N]``.

    Returns:
        ``[*batch]`` float32; NaN for a row with no finite value.
    """
    v = values.float()
    finite = torch.isfinite(v)
    keyed = torch.where(finite, v, torch.full_like(v, torch.inf))
    ordered = torch.sort(keyed, dim=-1).values
    n = finite.sum(-1, keepdim=True)
    med = ordered.gather(-1, ((n - 1) // 2).clamp_min(0)).squeeze(-1)
    return torch.where(n.squeeze(-1) > 0, med, torch.full_like(med, torch.nan))


def preplan_tokens(jumps: torch.Tensor, q: float = defaults.Q) -> torch.Tensor:
    """Preplan tokens ``T_loc = top_fraction(delta, q)``: the largest WAAD jumps. ``[*batch, N]`` bool."""
    return top_fraction(jumps, q)


def anchor_tokens(fai: torch.Tensor, q: float = defaults.Q) -> torch.Tensor:
    """Anchor tokens ``T_glob = top_fraction(FAI, q)``: the most revisited tokens. ``[*batch, N]`` bool."""
    return top_fraction(fai, q)


def _previous_window(x: torch.Tensor, k: int, fill: float) -> torch.Tensor:
    """``[*batch, N, k]``: entry ``[t, j]`` is ``x[t - k + j]`` (``fill`` before position 0)."""
    padded = torch.nn.functional.pad(x, (k, 0), value=fill)
    return padded.unfold(-1, k, 1)[..., :-1, :]


@renamed_keywords(k="look_back")
def dominated_anchors(
    waad: torch.Tensor, jumps: torch.Tensor, anchors: torch.Tensor, look_back: int = defaults.LOOK_BACK
) -> torch.Tensor:
    """Locally dominated anchors ``D``.

    An anchor ``t`` is dominated when ``WAAD[t] <= tau_waad`` and ``max(delta[t-k .. t-1]) >= tau_delta`` with
    ``k = look_back`` (over the finite jumps of that window), where ``tau_waad`` is the lower median of WAAD over the
    response and ``tau_delta`` the lower median of its finite jumps.

    Args:
        waad: ``[*batch, N]``, NaN outside the response.
        jumps: ``[*batch, N]`` from [`waad_jumps`][waad_jumps].
        anchors: ``[*batch, N]`` bool from [`anchor_tokens`][anchor_tokens].
        look_back: ``k``, the look-back in tokens (>= 1; the paper allows 1 to 3).

    Returns:
        ``[*batch, N]`` bool, a subset of ``anchors``.
    """
    k = check_positive_int(look_back, "look_back")
    tau_waad = lower_median(waad).unsqueeze(-1)
    tau_delta = lower_median(jumps).unsqueeze(-1)
    window = _previous_window(jumps.float(), k, torch.nan)
    window = torch.where(torch.isfinite(window), window, torch.full_like(window, -torch.inf))
    recent_jump = window.amax(-1) >= tau_delta  # False when the window has no finite jump or tau is NaN
    return anchors.bool() & (waad.float() <= tau_waad) & recent_jump


@renamed_keywords(k="look_back")
def intro_tokens(jumps: torch.Tensor, dominated: torch.Tensor, look_back: int = defaults.LOOK_BACK) -> torch.Tensor:
    """Introductory tokens ``I(D)``: for each dominated anchor ``t``, ``argmax_{u in [t-k, t-1]} delta[u]``.

    The earliest position wins a tie; positions before 0 or with no finite jump are never chosen.

    Args:
        jumps: ``[*batch, N]`` from [`waad_jumps`][waad_jumps].
        dominated: ``[*batch, N]`` bool from [`dominated_anchors`][dominated_anchors].
        look_back: ``k``, the look-back in tokens.

    Returns:
        ``[*batch, N]`` bool.
    """
    k = check_positive_int(look_back, "look_back")
    window = _previous_window(jumps.float(), k, torch.nan)
    window = torch.where(torch.isfinite(window), window, torch.full_like(window, -torch.inf))
    has_finite = torch.isfinite(window).any(-1)
    first_max = window.argmax(-1)  # first occurrence of the maximum: the earliest position
    n = jumps.shape[-1]
    target = torch.arange(n, device=jumps.device) - k + first_max
    valid = dominated.bool() & has_finite & (target >= 0)
    # Several dominated anchors may share one introductory token: count hits, then threshold.
    hits = torch.zeros(valid.shape, dtype=torch.int32, device=valid.device)
    hits.scatter_add_(-1, target.clamp_min(0), valid.to(torch.int32))
    return hits > 0
