"""torchmetrics classes of the rhythm: thin stateful wrappers over
[`lightning_reasonattn.functional`][lightning_reasonattn.functional].

Every state is a sum with ``dist_reduce_fx="sum"``, so values are right under distributed training by
construction: ``compute()`` on each rank gives the value over the data of all ranks. Every ``compute()`` returns a
``dict`` of named scalar (or profile) tensors: the names that the monitor logs.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from .deprecation import renamed_attribute, renamed_keywords
from .functional._checks import check_positive_int
from .functional.bootstrap import profile_sums
from .functional.coupling import coupling_counts, coupling_ratios, entropy_peak_counts
from .functional.trace import RhythmTrace
from .settings import CouplingSettings


class _ResponseMean(Metric):
    """Mean of a per-token signal over response tokens, NaN-aware, with an optional positional profile.

    ``compute()`` returns ``{"mean": scalar}``, and ``{"mean": scalar, "profile": [num_buckets]}`` with buckets
    (torchmetrics squeezes one-element outputs: with ``num_buckets=1`` the profile is a 0-d tensor, the mean).

    Args:
        num_buckets: also keep the mean in each of ``num_buckets`` equal slices of relative position in the
            response (token ``i`` of a response of ``n`` goes to bucket ``floor(i * num_buckets / n)``).
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

    def compute(self) -> dict[str, torch.Tensor]:
        mean = (self.total / self.count).float()  # no token yet: 0 / 0 = NaN (total only sums counted tokens)
        if not self.num_buckets:
            return {"mean": mean}
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
        >>> float(m.compute()["mean"])
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


@renamed_keywords(k="coupling_window", top="peak_fraction")
class RhythmCoupling(Metric):
    """How tightly anchors and preplan peaks go together, and how uncertain the model is at the peaks.

    With peaks as in [`local_peaks`][lightning_reasonattn.functional.coupling.local_peaks] (local maxima among the top
    ``peak_fraction`` of a signal) and a window of ``k = coupling_window`` tokens, in both directions (docs/rhythm.md,
    "Coupling statistics"):

    * ``fai_preceded_rate``: share of FAI peaks with a WAAD peak at or within ``k`` tokens before them (the
      paper's statistic: 52.5%); ``fai_preceded_shuffled``: the same share expected with the FAI peaks of each
      response at shuffled positions (the paper: 36.9%); ``fai_preceded_lift``: their ratio;
    * ``waad_followed_rate``, ``waad_followed_shuffled``, ``waad_followed_lift``: the other direction, the share
      of WAAD peaks with an FAI peak at or within ``k`` tokens after them;
    * ``entropy_at_peaks``, ``entropy_mean``, ``entropy_lift``: mean token entropy at WAAD peaks, over all
      response tokens, and their ratio (needs ``entropy`` in [`update`][update]).

    A lift above 1 means the two kinds of peaks meet more often than chance. Every value is a ratio of sums
    over all responses seen ([`coupling_ratios`][lightning_reasonattn.functional.coupling.coupling_ratios], as in
    ``reasonattn survey``'s table).

    Args:
        coupling: the window and the peak fraction (default: ``CouplingSettings()``, 3 tokens and 0.2).
        coupling_window: the window alone, instead of ``coupling`` (``k`` before 0.2).
        peak_fraction: the peak fraction alone, instead of ``coupling`` (``top`` before 0.2).

    Raises:
        ValueError: a bad window or fraction, or ``coupling`` given with one of them.

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
        "entropy_waad_peak_sum",
        "entropy_waad_peak_count",
        "entropy_sum",
        "entropy_count",
    )

    k = renamed_attribute("k", "coupling_window")
    top = renamed_attribute("top", "peak_fraction")

    def __init__(
        self,
        coupling: CouplingSettings | None = None,
        *,
        coupling_window: int | None = None,
        peak_fraction: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.coupling = CouplingSettings.resolve(coupling, coupling_window=coupling_window, peak_fraction=peak_fraction)
        for name in self._COUNTS:
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def coupling_window(self) -> int:
        return self.coupling.coupling_window

    @property
    def peak_fraction(self) -> float:
        return self.coupling.peak_fraction

    def update(self, trace: RhythmTrace, entropy: torch.Tensor | None = None) -> None:
        """Add a batch.

        Args:
            trace: the rhythm of the batch.
            entropy: ``[B, N]`` token entropies aligned to the tokens (see ``token_entropy``), optional.
        """
        device = self.waad_peaks.device
        c = self.coupling
        counts = coupling_counts(trace.waad, trace.fai, trace.response_mask, c.coupling_window, c.peak_fraction)
        if entropy is not None:
            found = entropy_peak_counts(entropy, trace.response_mask, trace.waad, c.peak_fraction)
            counts.update({name: value.sum() for name, value in found.items()})
        for name in self._COUNTS:
            if name in counts:
                setattr(self, name, getattr(self, name) + counts[name].to(device))

    def compute(self) -> dict[str, torch.Tensor]:
        sums = {name: getattr(self, name) for name in self._COUNTS}
        return {name: value.float() for name, value in coupling_ratios(sums).items()}
