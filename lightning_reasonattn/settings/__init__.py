"""Every knob of the package, each once, checked once when its settings object is built (the layer just above the
pure math: it imports [`lightning_reasonattn.functional`][lightning_reasonattn.functional] for the spec's defaults
and the checks, and nothing else of the package).

* [`RhythmSettings`][lightning_reasonattn.settings.rhythm.RhythmSettings]: what decides a measured rhythm (layers,
  window, horizon, head split, ``q``, ``look_back``, block size); ``SPEC`` holds the spec's defaults.
* [`CouplingSettings`][lightning_reasonattn.settings.coupling.CouplingSettings]: how the coupling statistics match
  peaks (``coupling_window``, ``peak_fraction``).
* [`SamplingSettings`][lightning_reasonattn.settings.sampling.SamplingSettings]: how completions are sampled, with the
  defaults of each command in ``COMMAND_DEFAULTS``.

The settings of a command are made of these (``SurveySettings`` is all three; RhythmGRPO's ``CreditSettings`` is a
``RhythmSettings``, its ``SamplingSettings`` a ``SamplingSettings``); functions that take them check nothing again.
"""

from .coupling import CouplingSettings
from .resolve import resolve
from .rhythm import RHYTHM_FIELDS, SPEC, RhythmSettings
from .sampling import COMMAND_DEFAULTS, MAX_COUNT, SamplingSettings

__all__ = [
    "COMMAND_DEFAULTS",
    "MAX_COUNT",
    "RHYTHM_FIELDS",
    "SPEC",
    "CouplingSettings",
    "RhythmSettings",
    "SamplingSettings",
    "resolve",
]
