"""Coupling statistics of the rhythm: peaks, peaks near peaks against shuffled positions, and token entropy.

Definitions (docs/rhythm.md, section "Coupling statistics"; one definition, shared by ``RhythmCoupling`` and
``reasonattn survey``):

* A **peak** of a signal ``v`` (``[*batch, N]``, NaN where undefined) is a position ``t`` where ``v[t]`` is
  finite, among ``top_fraction(v, peak_fraction)`` (default the top 20%), and a local maximum: ``v[t] > v[t-1]``
  and ``v[t] >= v[t+1]``, a neighbour that is NaN or outside the sequence counting as lower. (The first
  position of a plateau is the peak.)
* Two directions, for a window of ``k = coupling_window`` tokens:

  - **WAAD peak followed by an FAI peak** (``waad_followed``): some FAI peak lies in ``[t, t + k]``;
  - **FAI peak preceded by a WAAD peak** (``fai_preceded``): some WAAD peak lies in ``[t - k, t]``. This is
    the paper's statistic ("an FAI peak follows or coincides with a WAAD peak", 52.5% vs 36.9%).

* The **shuffled** value of a direction is the expected count of hits when the source peaks of each
  response are placed at uniformly random distinct positions among those where the source signal is
  defined (every response token for WAAD; those with a finite FAI for FAI). By linearity of expectation
  it is exact, no random draw needed: ``peaks * (candidates that hit) / candidates``, per response.
  **rate** = hits / peaks, **shuffled rate** = shuffled / peaks, **lift** = hits / shuffled (summed over
  responses before dividing: a ratio of sums; [`COUPLING_RATIOS`][COUPLING_RATIOS] lists them and
  [`coupling_ratios`][coupling_ratios] computes them, for ``RhythmCoupling`` and the survey alike).
* The **token entropy** of response token ``t`` is the entropy of the distribution it was sampled from:
  the softmax of logits row ``t - 1``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..deprecation import renamed_keywords
from . import defaults
from ._checks import check_fraction, check_positive_int
from .attention import as_float
from .tokens import top_fraction
from .trace import select_tokens

LOOKS = ("ahead", "back")


@renamed_keywords(top="peak_fraction")
def local_peaks(values: torch.Tensor, peak_fraction: float = defaults.PEAK_FRACTION) -> torch.Tensor:
    """Peaks of a signal: local maxima among its ``peak_fraction`` of finite values.

    Args:
        values: ``[*batch, N]``, NaN where undefined.
        peak_fraction: fraction in (0, 1].

    Returns:
        ``[*batch, N]`` bool.
    """
    peak_fraction = check_fraction(peak_fraction, "peak_fraction")
    v = as_float(values)
    low = torch.where(torch.isfinite(v), v, torch.full_like(v, -float("inf")))
    left = torch.nn.functional.pad(low[..., :-1], (1, 0), value=-float("inf"))
    right = torch.nn.functional.pad(low[..., 1:], (0, 1), value=-float("inf"))
    return top_fraction(v, peak_fraction) & (low > left) & (low >= right)


def _check_window(coupling_window: int) -> int:
    k = coupling_window
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"coupling_window={k!r} is invalid: the coupling window must be an integer >= 0.")
    return k


@renamed_keywords(k="coupling_window")
def within(targets: torch.Tensor, coupling_window: int, look: str = "ahead") -> torch.Tensor:
    """``out[t]`` is True when some ``targets[u]`` is True for ``u`` in ``[t, t + k]`` (``look="ahead"``) or in
    ``[t - k, t]`` (``look="back"``), ``k = coupling_window``, positions outside the sequence ignored.

    Args:
        targets: ``[*batch, N]`` bool.
        coupling_window: ``k``, the window in tokens (>= 0; 0 means the same position only).
        look: ``"ahead"`` or ``"back"``.

    Returns:
        ``[*batch, N]`` bool.
    """
    k = _check_window(coupling_window)
    if look not in LOOKS:
        raise ValueError(f"look={look!r} is invalid: use 'ahead' or 'back'.")
    n = targets.shape[-1]
    csum = torch.nn.functional.pad(targets.long().cumsum(-1), (1, 0))  # csum[i] = count before i
    t = torch.arange(n, device=targets.device)
    if look == "ahead":
        return (csum[..., (t + k + 1).clamp(max=n)] - csum[..., t]) > 0
    return (csum[..., t + 1] - csum[..., (t - k).clamp(min=0)]) > 0


@renamed_keywords(k="coupling_window")
def shuffled_hits(
    sources: torch.Tensor, targets: torch.Tensor, candidates: torch.Tensor, coupling_window: int, look: str
) -> dict[str, torch.Tensor]:
    """Per row: how many ``sources`` have a ``targets`` event within the window, and how many at shuffled positions.

    Args:
        sources: ``[*batch, N]`` bool, the events counted (e.g. FAI peaks); must lie inside ``candidates``.
        targets: ``[*batch, N]`` bool, the events looked for (e.g. WAAD peaks).
        candidates: ``[*batch, N]`` bool, where a source can be (the shuffle's support).
        coupling_window: ``k``, the window in tokens. look: ``"ahead"`` (``[t, t + k]``) or ``"back"``
            (``[t - k, t]``).

    Returns:
        float64 ``[*batch]`` tensors ``events`` (sources), ``hits`` (sources with a target in their window) and
        ``shuffled`` (expected hits of the same number of sources at uniformly random distinct candidate
        positions: ``events * (candidates with a target in their window) / candidates``; 0 without candidates).
    """
    near = within(targets.bool(), coupling_window, look)
    candidates = candidates.bool()
    sources = sources.bool() & candidates
    events = sources.sum(-1).double()
    support = candidates.sum(-1).double()
    open_hits = (near & candidates).sum(-1).double()
    shuffled = torch.where(support > 0, events * open_hits / support.clamp_min(1), torch.zeros_like(events))
    return {"events": events, "hits": (near & sources).sum(-1).double(), "shuffled": shuffled}


@renamed_keywords(k="coupling_window", top="peak_fraction")
def coupling_counts(
    waad: torch.Tensor,
    fai: torch.Tensor,
    response_mask: torch.Tensor,
    coupling_window: int = defaults.COUPLING_WINDOW,
    peak_fraction: float = defaults.PEAK_FRACTION,
    per_response: bool = False,
) -> dict[str, torch.Tensor]:
    """Counts behind both coupling directions and their shuffled baselines.

    Args:
        waad: ``[B, N]``; fai: ``[B, N]``; response_mask: ``[B, N]`` bool.
        coupling_window: ``k``, the look-ahead / look-back in tokens. peak_fraction: see
            [`local_peaks`][local_peaks].
        per_response: return ``[B]`` tensors instead of sums over the batch.

    Returns:
        float64 counts: ``waad_peaks``, ``waad_followed`` (WAAD peaks with an FAI peak in ``[t, t + k]``),
        ``waad_followed_shuffled`` (its expectation at shuffled WAAD-peak positions); ``fai_peaks``,
        ``fai_preceded`` (FAI peaks with a WAAD peak in ``[t - k, t]``, the paper's direction),
        ``fai_preceded_shuffled``; ``positions`` (response tokens).
    """
    mask = response_mask.bool()
    k = coupling_window
    waad_peaks = local_peaks(waad, peak_fraction) & mask
    fai_peaks = local_peaks(fai, peak_fraction) & mask
    forward = shuffled_hits(waad_peaks, fai_peaks, mask & torch.isfinite(as_float(waad)), k, "ahead")
    backward = shuffled_hits(fai_peaks, waad_peaks, mask & torch.isfinite(as_float(fai)), k, "back")
    out = {
        "waad_peaks": forward["events"],
        "waad_followed": forward["hits"],
        "waad_followed_shuffled": forward["shuffled"],
        "fai_peaks": backward["events"],
        "fai_preceded": backward["hits"],
        "fai_preceded_shuffled": backward["shuffled"],
        "positions": mask.sum(-1).double(),
    }
    return out if per_response else {name: value.sum() for name, value in out.items()}


def entropy_counts(entropy: torch.Tensor, response_mask: torch.Tensor, at: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-row sums behind "mean token entropy at ``at`` / mean over the response".

    Args:
        entropy: ``[B, N]`` token entropies (NaN where unknown), aligned as [`token_entropy`][token_entropy].
        response_mask: ``[B, N]`` bool.
        at: ``[B, N]`` bool, the positions of interest (e.g. WAAD peaks).

    Returns:
        float64 ``[B]``: ``sum_at``, ``count_at``, ``sum_all``, ``count_all`` over response tokens with a
        finite entropy.
    """
    use = response_mask.bool() & torch.isfinite(entropy)
    ent = torch.where(use, entropy.detach().double(), 0.0)
    here = use & at.bool()
    return {
        "sum_at": (ent * here).sum(-1),
        "count_at": here.sum(-1).double(),
        "sum_all": ent.sum(-1),
        "count_all": use.sum(-1).double(),
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
    nan = torch.full((logits.shape[0], 1), torch.nan, device=logits.device)
    return torch.cat([nan, logits_entropy(logits[:, :-1], chunk)], dim=1)


@renamed_keywords(k="coupling_window", top="peak_fraction")
def response_counts(
    waad: torch.Tensor,
    fai: torch.Tensor,
    response_mask: torch.Tensor,
    entropy: torch.Tensor | None = None,
    coupling_window: int = defaults.COUPLING_WINDOW,
    peak_fraction: float = defaults.PEAK_FRACTION,
    q: float = defaults.Q,
    look_back: int = defaults.LOOK_BACK,
) -> dict[str, torch.Tensor]:
    """Every per-response count behind the survey's statistics (docs/rhythm.md, "Coupling statistics").

    The token sets (preplan, anchor, locally dominated) are selected from the two signals by
    [`select_tokens`][lightning_reasonattn.functional.select_tokens], as in a [`RhythmTrace`][RhythmTrace].

    Args:
        waad: ``[B, N]``, NaN outside the response; fai: ``[B, N]``, NaN where undefined.
        response_mask: ``[B, N]`` bool.
        entropy: ``[B, N]`` token entropies aligned as [`token_entropy`][token_entropy] (optional; without it the
            entropy counts are 0 and the entropy statistics undefined).
        coupling_window: ``k``, the coupling window in tokens. peak_fraction: see [`local_peaks`][local_peaks].
        q: top fraction of preplan and anchor tokens. look_back: look-back of dominated anchors.

    Returns:
        float64 ``[B]`` tensors. The [`coupling_counts`][coupling_counts] of both peak directions. Token sets, with
        the same windows and shuffle: ``anchors``, ``anchor_preceded`` (anchors with a preplan token in
        ``[t - k, t]``), ``anchor_preceded_shuffled``; ``preplans``, ``preplan_followed``
        (preplan tokens with an anchor in ``[t, t + k]``), ``preplan_followed_shuffled``; ``dominated``.
        Entropy sums and counts: ``entropy_sum``/``entropy_count`` (all response tokens),
        ``entropy_waad_peak_sum``/``_count`` (at WAAD peaks), ``entropy_jump_peak_sum``/``_count`` (at peaks of
        the WAAD jumps). ``waad_sum``/``waad_count`` and ``fai_sum``/``fai_count`` over the finite values.
    """
    k = coupling_window
    mask = response_mask.bool()
    waad, fai = as_float(waad).masked_fill(~mask, float("nan")), as_float(fai).masked_fill(~mask, float("nan"))
    sets = select_tokens(waad, fai, q, look_back)
    out = coupling_counts(waad, fai, mask, k, peak_fraction, per_response=True)
    anchors = shuffled_hits(sets["anchor"], sets["preplan"], mask & torch.isfinite(fai), k, "back")
    preplans = shuffled_hits(sets["preplan"], sets["anchor"], mask & torch.isfinite(sets["waad_jumps"]), k, "ahead")
    out.update(
        anchors=anchors["events"],
        anchor_preceded=anchors["hits"],
        anchor_preceded_shuffled=anchors["shuffled"],
        preplans=preplans["events"],
        preplan_followed=preplans["hits"],
        preplan_followed_shuffled=preplans["shuffled"],
        dominated=(sets["dominated"] & mask).sum(-1).double(),
    )
    if entropy is None:
        entropy = torch.full(mask.shape, float("nan"), device=mask.device)
    out.update(entropy_peak_counts(entropy, mask, waad, peak_fraction))
    at_jump = entropy_counts(entropy, mask, local_peaks(sets["waad_jumps"], peak_fraction))
    out.update(entropy_jump_peak_sum=at_jump["sum_at"], entropy_jump_peak_count=at_jump["count_at"])
    for name, v in (("waad", waad.double()), ("fai", fai.double())):
        use = torch.isfinite(v)
        out[f"{name}_sum"] = torch.where(use, v, torch.zeros_like(v)).sum(-1)
        out[f"{name}_count"] = use.sum(-1).double()
    return out


def entropy_peak_counts(
    entropy: torch.Tensor, response_mask: torch.Tensor, waad: torch.Tensor, peak_fraction: float
) -> dict[str, torch.Tensor]:
    """Per-row sums behind "mean token entropy at WAAD peaks / mean over the response" (``entropy_lift``).

    Args:
        entropy: ``[B, N]`` token entropies, aligned as [`token_entropy`][token_entropy].
        response_mask: ``[B, N]`` bool.
        waad: ``[B, N]``, whose [`local_peaks`][local_peaks] are the positions of interest.
        peak_fraction: see [`local_peaks`][local_peaks].

    Returns:
        float64 ``[B]``: ``entropy_sum``, ``entropy_count`` (response tokens with a finite entropy) and
        ``entropy_waad_peak_sum``, ``entropy_waad_peak_count`` (those at WAAD peaks).
    """
    found = entropy_counts(entropy, response_mask, local_peaks(waad, peak_fraction))
    return {
        "entropy_sum": found["sum_all"],
        "entropy_count": found["count_all"],
        "entropy_waad_peak_sum": found["sum_at"],
        "entropy_waad_peak_count": found["count_at"],
    }


def direction_ratios(key: str, events: str) -> dict[str, tuple[str, ...]]:
    """The three ratios of one direction ``key`` (such as ``fai_preceded``) whose source events are counted as
    ``events``: ``key_rate`` (hits / events), ``key_shuffled`` (shuffled hits / events), ``key_lift`` (hits /
    shuffled hits), as ``name -> terms`` of [`ratio_of_sums`][ratio_of_sums]."""
    return {
        f"{key}_rate": (key, events),
        f"{key}_shuffled": (f"{key}_shuffled", events),
        f"{key}_lift": (key, f"{key}_shuffled"),
    }


COUPLING_RATIOS: dict[str, tuple[str, ...]] = {
    **direction_ratios("fai_preceded", "fai_peaks"),
    **direction_ratios("waad_followed", "waad_peaks"),
    "entropy_at_peaks": ("entropy_waad_peak_sum", "entropy_waad_peak_count"),
    "entropy_mean": ("entropy_sum", "entropy_count"),
    "entropy_lift": ("entropy_waad_peak_sum", "entropy_waad_peak_count", "entropy_sum", "entropy_count"),
}
"""The published coupling statistics as ratios of summed counts: ``name -> (a, b)`` for ``sum a / sum b``, or
``(a, b, c, d)`` for ``(sum a / sum b) / (sum c / sum d)``. ``X_rate`` = hits / peaks, ``X_shuffled`` = shuffled hits /
peaks, ``X_lift`` = hits / shuffled hits; ``entropy_lift`` = mean entropy at WAAD peaks / mean entropy (the paper:
0.361 / 0.239). The count names are those of [`coupling_counts`][coupling_counts] and
[`entropy_peak_counts`][entropy_peak_counts]."""


def ratio_of_sums(sums: Mapping[str, torch.Tensor], terms: tuple[str, ...]) -> torch.Tensor:
    """``a / b`` or ``(a / b) / (c / d)`` of the summed counts named by ``terms``, NaN where a denominator is 0.

    Args:
        sums: count name -> tensor of sums (any shape, e.g. ``[]`` or ``[n_boot]``; all alike).
        terms: ``(a, b)`` or ``(a, b, c, d)``, as in [`COUPLING_RATIOS`][COUPLING_RATIOS].
    """

    def divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.nan)

    a, b, *rest = (sums[name] for name in terms)
    value = divide(a, b)
    return divide(value, divide(rest[0], rest[1])) if rest else value


def coupling_ratios(sums: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every statistic of [`COUPLING_RATIOS`][COUPLING_RATIOS] from summed counts (what ``RhythmCoupling.compute``
    returns, and rows of the survey's table).

    Example:
        >>> import torch
        >>> counts = dict(fai_peaks=4, fai_preceded=2, fai_preceded_shuffled=1, waad_peaks=1, waad_followed=1)
        >>> counts.update(waad_followed_shuffled=0.5, entropy_sum=6, entropy_count=3)
        >>> counts.update(entropy_waad_peak_sum=3, entropy_waad_peak_count=1)  # mean 3 at peaks, 2 overall
        >>> out = coupling_ratios({name: torch.tensor(float(value)) for name, value in counts.items()})
        >>> float(out["fai_preceded_rate"]), float(out["fai_preceded_lift"]), float(out["entropy_lift"])
        (0.5, 2.0, 1.5)
    """
    return {name: ratio_of_sums(sums, terms) for name, terms in COUPLING_RATIOS.items()}
