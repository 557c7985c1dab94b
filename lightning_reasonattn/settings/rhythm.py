"""The rhythm's knobs: [`RhythmSettings`][RhythmSettings], checked once when built, and ``SPEC``, the spec's defaults.

[`RhythmSettings`][RhythmSettings] holds what decides a measured [`RhythmTrace`][lightning_reasonattn.RhythmTrace]:
which layers, the WAAD window, the FAI horizon, the head split, the top fraction ``q`` of preplan and anchor tokens,
the ``look_back`` of dominated anchors, and the capture's block size (memory, not results). Its defaults are the
constants of [`lightning_reasonattn.functional.defaults`][lightning_reasonattn.functional.defaults], which every
function that takes one of these knobs also defaults to; the settings of the credit (``CreditSettings``), the survey
(``SurveySettings``) and the callbacks are ``RhythmSettings`` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from ..deprecation import renamed_attribute, renamed_keywords
from ..functional import defaults
from ..functional._checks import as_int, check_choice, check_fraction, check_horizon, check_number, check_window
from .resolve import next_post_init

LayerChoice = Literal["middle", "all"]

RENAMED = {"k": "look_back"}
"""Old keyword names of the rhythm's knobs (still taken, with a ``DeprecationWarning``) and their names now."""


@renamed_keywords(**RENAMED)
@dataclass(frozen=True, kw_only=True)
class RhythmSettings:
    """What decides a rhythm measurement; every number is checked when the settings are built.

    Attributes:
        layers: 'middle' (5 middle layers), 'all' or a list of layer indices (negative ones from the end).
        window: WAAD window in tokens (>= 1).
        horizon: FAI horizon [lo, hi] in tokens, 0 <= lo <= hi.
        head_fraction: share of the heads in each of the local and global groups, in (0, 1].
        q: fraction of the response tokens selected as preplan / anchor tokens, in (0, 1].
        look_back: look-back in tokens of a dominated anchor and its introductory token (>= 1, paper: 1 to 3; was k).
        block_size: query rows per block of the attention capture (memory, not results).
    """

    layers: LayerChoice | list[int] = defaults.LAYERS
    window: int = defaults.WINDOW
    horizon: tuple[int, int] = defaults.HORIZON
    head_fraction: float = defaults.HEAD_FRACTION
    q: float = defaults.Q
    look_back: int = defaults.LOOK_BACK
    block_size: int = defaults.BLOCK_SIZE

    k = renamed_attribute("k", "look_back")

    def __post_init__(self):
        if isinstance(self.layers, str):
            check_choice("layers", self.layers, LayerChoice)
        else:
            object.__setattr__(self, "layers", _layer_indices(self.layers))
        object.__setattr__(self, "window", check_window(self.window))
        horizon = tuple(self.horizon) if isinstance(self.horizon, list) else self.horizon  # as YAML gives it
        object.__setattr__(self, "horizon", check_horizon(horizon))
        object.__setattr__(self, "head_fraction", check_fraction(self.head_fraction, "head_fraction"))
        object.__setattr__(self, "q", check_fraction(self.q, "q"))
        look_back = check_number("look_back", self.look_back, low=1, integer=True, fix=" (the spec's default 3)")
        object.__setattr__(self, "look_back", look_back)
        object.__setattr__(self, "block_size", check_number("block_size", self.block_size, low=1, integer=True))
        next_post_init(self, RhythmSettings)

    def rhythm(self) -> RhythmSettings:
        """Only the rhythm's knobs, as a plain ``RhythmSettings`` (of a subclass such as ``CreditSettings`` too)."""
        return RhythmSettings(**self.capture_kwargs())

    def capture_kwargs(self) -> dict[str, Any]:
        """The knobs as keyword arguments of ``capture_rhythm`` (all of them)."""
        return {name: getattr(self, name) for name in RHYTHM_FIELDS}


def _layer_indices(layers) -> list[int]:
    """Layer indices as a list of Python ints: from a list, a tuple, an array or one integer."""
    try:
        chosen = [layers] if as_int(layers) is not None else list(layers)
    except TypeError:
        chosen = []
    indices = [as_int(i) for i in chosen]
    if not indices or None in indices:
        raise ValueError(f"layers={layers!r} is invalid: use 'middle', 'all' or a non-empty list of layer indices.")
    return indices


RHYTHM_FIELDS = tuple(f.name for f in fields(RhythmSettings))
"""The names of the rhythm's knobs, in order."""

SPEC = RhythmSettings()
"""The spec's defaults (docs/rhythm.md): 5 middle layers, W = 10, horizon (10, 100), 30% head split, q = 0.4,
look-back 3."""
