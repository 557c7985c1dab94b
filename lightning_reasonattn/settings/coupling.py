"""The coupling statistics' knobs (docs/rhythm.md, "Coupling statistics"): [`CouplingSettings`][CouplingSettings].

They are not the rhythm's: they decide how the peaks of two measured signals are matched (``RhythmCoupling``,
``reasonattn survey``), not what is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..functional import defaults
from ..functional._checks import check_fraction, check_number
from .resolve import next_post_init, resolve


@dataclass(frozen=True, kw_only=True)
class CouplingSettings:
    """How peaks are found and matched by the coupling statistics; checked when built.

    A WAAD peak at ``t`` is followed by an FAI peak in ``[t, t + coupling_window]``; an FAI peak at ``t`` is preceded
    by a WAAD peak in ``[t - coupling_window, t]``. Before 0.2 the window was ``RhythmCoupling(k=)``, ``coupling_k``
    and ``reasonattn survey --k``; the fraction ``RhythmCoupling(top=)`` and ``peak_top``.

    Attributes:
        coupling_window: coupling window in tokens, after a WAAD peak and before an FAI peak (>= 0; 0: same token).
        peak_fraction: peaks are local maxima among this top fraction of a signal, in (0, 1].
    """

    coupling_window: int = defaults.COUPLING_WINDOW
    peak_fraction: float = defaults.PEAK_FRACTION

    def __post_init__(self):
        window = check_number("coupling_window", self.coupling_window, low=0, integer=True, fix=" (default 3)")
        object.__setattr__(self, "coupling_window", window)
        object.__setattr__(self, "peak_fraction", check_fraction(self.peak_fraction, "peak_fraction"))
        next_post_init(self, CouplingSettings)

    def coupling(self) -> CouplingSettings:
        """Only the coupling's knobs, as a plain ``CouplingSettings`` (of a subclass such as ``SurveySettings`` too)."""
        return CouplingSettings(coupling_window=self.coupling_window, peak_fraction=self.peak_fraction)

    @classmethod
    def resolve(
        cls, coupling: CouplingSettings | None, *, coupling_window: int | None, peak_fraction: float | None
    ) -> CouplingSettings:
        """``coupling``, or the settings of the two knobs given as keywords (not both ways)."""
        found = resolve(cls, coupling, "coupling", coupling_window=coupling_window, peak_fraction=peak_fraction)
        return found.coupling()
