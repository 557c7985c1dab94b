"""torchmetrics classes of the rhythm: thin stateful wrappers over
[`lightning_reasonattn.functional`][lightning_reasonattn.functional].

Every state is a sum with ``dist_reduce_fx="sum"``, so values are right under distributed training by
construction: ``compute()`` on each rank gives the value over the data of all ranks.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from .functional._checks import check_positive_int
from .functional.bootstrap import profile_sums
from .functional.coupling import coupling_counts, entropy_counts, local_peaks
from .functional.trace import RhythmTrace


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return num / den if den > 0 else torch.full_like(num, float("nan"))


class _ResponseMean(Metric):
    """Mean of a per-token signal over response tokens, NaN-aware, with an optional positional profile.

    Args:
        num_buckets: also keep the mean in each of ``num_buckets`` equal slices of relative position in the
            response (token ``i`` of a response of ``n`` goes to bucket ``floor(i * num_buckets / n)``).
            ``compute()`` then returns ``{"mean": scalar, "profile": [num_buckets]}``.
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None
    signal = ""  # the RhythmTrace field this metric reads in update_from_trace

    def __init__(self, num_buckets: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_buckets = None if num_buckets is None else check_positive_int(num_buckets, "num_buckets")
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        if self.num_buckets:
            zeros = torch.zeros(self.num_buckets, dtype=torch.float64)
            self.add_state("bucket_total", zeros.clone(), dist_reduce_fx="sum")
            self.add_state("bucket_count", zeros.clone(), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor, response_mask: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            values: ``[B, N]``, NaN where undefined (outside the response, empty horizon).
            response_mask: ``[B, N]`` bool; sets the relative positions of the profile (default: where
                ``values`` is finite).
        """
        v = values.detach().double()
        finite = torch.isfinite(v)
        mask = finite if response_mask is None else response_mask.bool().to(v.device)
        use = finite & mask
        self.total += torch.where(use, v, torch.zeros_like(v)).sum()
        self.count += use.sum()
        if self.num_buckets:
            sums, counts = profile_sums(v, mask, self.num_buckets)
            self.bucket_total += sums.sum(0)
            self.bucket_count += counts.sum(0)

    def update_from_trace(self, trace: RhythmTrace) -> None:
        self.update(getattr(trace, self.signal), trace.response_mask)

    def compute(self):
        mean = _ratio(self.total, self.count).float()
        if not self.num_buckets:
            return mean
        profile = torch.where(
            self.bucket_count > 0, self.bucket_total / self.bucket_count.clamp_min(1), float("nan")
        ).float()
        return {"mean": mean, "profile": profile}


class WindowedAverageAttentionDistance(_ResponseMean):
    """Mean WAAD over response tokens (and its profile over relative position, with ``num_buckets``).

    Example:
        >>> import torch
        >>> m = WindowedAverageAttentionDistance()
        >>> m.update(torch.tensor([[float("nan"), 2.0, 4.0]]))
        >>> float(m.compute())
        3.0
    """

    signal = "waad"


class FutureAttentionInfluence(_ResponseMean):
    """Mean FAI over the response tokens where it is defined (and its profile, with ``num_buckets``).

    Example:
        >>> import torch
        >>> m = FutureAttentionInfluence(num_buckets=2)
        >>> fai = torch.tensor([[0.1, 0.3, 0.5, float("nan")]])  # the last token has an empty horizon
        >>> m.update(fai, torch.ones(1, 4, dtype=torch.bool))
        >>> [round(v, 3) for v in m.compute()["profile"].tolist()]  # halves: (0.1 + 0.3) / 2 and 0.5
        [0.2, 0.5]
    """

    signal = "fai"


class RhythmCoupling(Metric):
    """How tightly anchors and preplan peaks go together, and how uncertain the model is at the peaks.

    With peaks as in [`local_peaks`][lightning_reasonattn.functional.coupling.local_peaks] (local maxima among the top
    ``top`` fraction) and a window of ``k`` tokens, in both directions (docs/rhythm.md, "Coupling statistics"):

    * ``fai_preceded_rate``: share of FAI peaks with a WAAD peak at or within ``k`` tokens before them (the
      paper's statistic: 52.5%); ``fai_preceded_shuffled``: the same share expected with the FAI peaks of each
      response at shuffled positions (the paper: 36.9%); ``fai_preceded_lift``: their ratio;
    * ``waad_followed_rate``, ``waad_followed_shuffled``, ``waad_followed_lift``: the other direction, the share
      of WAAD peaks with an FAI peak at or within ``k`` tokens after them;
    * ``entropy_at_peaks``, ``entropy_mean``, ``entropy_lift``: mean token entropy at WAAD peaks, over all
      response tokens, and their ratio (needs ``entropy`` in [`update`][update]).

    A lift above 1 means the two kinds of peaks meet more often than chance. Every value is a ratio of sums
    over all responses seen.

    Args:
        k: look-ahead / look-back in tokens (default 3).
        top: peak fraction (default 0.2).

    Example:
        >>> import torch
        >>> from lightning_reasonattn.functional import rhythm_from_attentions
        >>> causal = torch.ones(40, 40).tril()
        >>> attn = (causal / causal.sum(-1, keepdim=True)).expand(1, 1, 2, 40, 40)  # [B, L_sel, H, N, N]
        >>> m = RhythmCoupling()
        >>> m.update(rhythm_from_attentions(attn, torch.arange(40)[None] >= 8, horizon=(2, 10)))
        >>> print(*[name for name in m.compute() if name.startswith("fai_preceded")])
        fai_preceded_rate fai_preceded_shuffled fai_preceded_lift
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None
    _COUNTS = (
        "waad_peaks",
        "waad_followed",
        "waad_followed_shuffled",
        "fai_peaks",
        "fai_preceded",
        "fai_preceded_shuffled",
    )

    def __init__(self, k: int = 3, top: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.k = k
        self.top = top
        for name in (*self._COUNTS, "ent_peak", "n_peak", "ent_all", "n_all"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, trace: RhythmTrace, entropy: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            trace: the rhythm of the batch.
            entropy: ``[B, N]`` token entropies aligned to the tokens (see ``token_entropy``), optional.
        """
        device = self.waad_peaks.device
        counts = coupling_counts(trace.waad, trace.fai, trace.response_mask, self.k, self.top)
        for name in self._COUNTS:
            setattr(self, name, getattr(self, name) + counts[name].to(device))
        if entropy is not None:
            ent = entropy_counts(entropy, trace.response_mask, local_peaks(trace.waad, self.top))
            self.ent_peak += ent["sum_at"].sum().to(device)
            self.n_peak += ent["count_at"].sum().to(device)
            self.ent_all += ent["sum_all"].sum().to(device)
            self.n_all += ent["count_all"].sum().to(device)

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for direction, peaks in (("fai_preceded", self.fai_peaks), ("waad_followed", self.waad_peaks)):
            hits, shuffled = getattr(self, direction), getattr(self, f"{direction}_shuffled")
            out[f"{direction}_rate"] = _ratio(hits, peaks)
            out[f"{direction}_shuffled"] = _ratio(shuffled, peaks)
            out[f"{direction}_lift"] = _ratio(hits, shuffled)
        ent_peak = _ratio(self.ent_peak, self.n_peak)
        ent_all = _ratio(self.ent_all, self.n_all)
        out.update(entropy_at_peaks=ent_peak, entropy_mean=ent_all, entropy_lift=_ratio(ent_peak, ent_all))
        return {name: value.float() for name, value in out.items()}
