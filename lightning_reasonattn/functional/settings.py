"""The rhythm's knobs and the defaults of the spec (docs/rhythm.md), in one place.

[`RhythmSettings`][RhythmSettings] holds what decides a measured [`RhythmTrace`][lightning_reasonattn.RhythmTrace]:
which layers, the WAAD window, the FAI horizon, the head split, the top fraction ``q`` of preplan and anchor tokens,
the look-back ``k`` of dominated anchors, and the capture's block size (memory, not results). ``SPEC`` is the
instance with the spec's defaults; every function of the package that takes one of these knobs defaults to
``SPEC.<name>``, and the settings of the credit (``CreditSettings``), the survey (``SurveySettings``) and the
monitor are ``RhythmSettings`` themselves.

The coupling statistics (docs/rhythm.md, "Coupling statistics") have knobs of their own, which are not the rhythm's:
``COUPLING_K`` (a peak's window in tokens) and ``PEAK_TOP`` (peaks are local maxima among this top fraction).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from ._checks import as_int, check_choice, check_fraction, check_horizon, check_number, check_window

LayerChoice = Literal["middle", "all"]


@dataclass(frozen=True, kw_only=True)
class RhythmSettings:
    """What decides a rhythm measurement; every number is checked when the settings are built.

    Attributes:
        layers: 'middle' (5 middle layers), 'all' or a list of layer indices (negative ones from the end).
        window: WAAD window in tokens (>= 1).
        horizon: FAI horizon [lo, hi] in tokens, 0 <= lo <= hi.
        head_fraction: share of the heads in each of the local and global groups, in (0, 1].
        q: fraction of the response tokens selected as preplan / anchor tokens, in (0, 1].
        k: look-back in tokens of a dominated anchor, and for its introductory token (>= 1; the paper allows 1 to 3).
        block_size: query rows per block of the attention capture (memory, not results).
    """

    layers: LayerChoice | list[int] = "middle"
    window: int = 10
    horizon: tuple[int, int] = (10, 100)
    head_fraction: float = 0.3
    q: float = 0.4
    k: int = 3
    block_size: int = 128

    def __post_init__(self):
        layers = self.layers
        if isinstance(layers, str):
            check_choice("layers", layers, LayerChoice)
        elif not isinstance(layers, (list, tuple)) or not layers or any(as_int(i) is None for i in layers):
            raise ValueError(f"layers={layers!r} is invalid: use 'middle', 'all' or a non-empty list of layer indices.")
        else:
            object.__setattr__(self, "layers", [as_int(i) for i in layers])
        object.__setattr__(self, "window", check_window(self.window))
        horizon = tuple(self.horizon) if isinstance(self.horizon, list) else self.horizon  # as YAML gives it
        object.__setattr__(self, "horizon", check_horizon(horizon))
        object.__setattr__(self, "head_fraction", check_fraction(self.head_fraction, "head_fraction"))
        object.__setattr__(self, "q", check_fraction(self.q, "q"))
        object.__setattr__(self, "k", check_number("k", self.k, low=1, integer=True, fix=" (the spec's default 3)"))
        object.__setattr__(self, "block_size", check_number("block_size", self.block_size, low=1, integer=True))

    def rhythm(self) -> RhythmSettings:
        """Only the rhythm's knobs, as a plain ``RhythmSettings`` (of a subclass such as ``CreditSettings`` too)."""
        return RhythmSettings(**{name: getattr(self, name) for name in RHYTHM_FIELDS})

    def capture_kwargs(self) -> dict[str, Any]:
        """The knobs as keyword arguments of ``capture_rhythm`` (all of them)."""
        return {name: getattr(self, name) for name in RHYTHM_FIELDS}


RHYTHM_FIELDS = tuple(f.name for f in fields(RhythmSettings))
"""The names of the rhythm's knobs, in order."""

SPEC = RhythmSettings()
"""The spec's defaults (docs/rhythm.md): 5 middle layers, W = 10, horizon (10, 100), 30% head split, q = 0.4, k = 3."""

COUPLING_K = 3
"""Default window of the coupling statistics: a peak counts as coupled with one within this many tokens."""
PEAK_TOP = 0.2
"""Default peak fraction of the coupling statistics: peaks are local maxima among this top fraction of a signal."""
