"""lightning_reasonattn: see and train the preplan-and-anchor attention rhythm of reasoning LMs.

The public names below are imported on first use (PEP 562), so that ``import lightning_reasonattn.functional`` (pure
tensor math) or ``reasonattn --help`` does not load Lightning, transformers or matplotlib.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what static tools (and the API docs) read; at run time __getattr__ imports each on first use
    from .callbacks import AttentionRhythmMonitor, BatchKeys, RhythmReport
    from .capture import capture_group_maps, capture_rhythm, knockout_nll, rhythm_capture
    from .functional import RhythmTrace, credit_gamma
    from .grpo import RhythmGRPO
    from .metrics import FutureAttentionInfluence, RhythmCoupling, WindowedAverageAttentionDistance
    from .models import NanoGPT, WordTokenizer
    from .settings import CouplingSettings, RhythmSettings, SamplingSettings
    from .survey import SurveySettings, run_survey

__version__ = "0.1.0"

_HOME = {
    "AttentionRhythmMonitor": ".callbacks",
    "BatchKeys": ".callbacks",
    "RhythmReport": ".callbacks",
    "capture_group_maps": ".capture",
    "capture_rhythm": ".capture",
    "knockout_nll": ".capture",
    "rhythm_capture": ".capture",
    "RhythmTrace": ".functional",
    "credit_gamma": ".functional",
    "RhythmGRPO": ".grpo",
    "FutureAttentionInfluence": ".metrics",
    "RhythmCoupling": ".metrics",
    "WindowedAverageAttentionDistance": ".metrics",
    "NanoGPT": ".models",
    "WordTokenizer": ".models",
    "CouplingSettings": ".settings",
    "RhythmSettings": ".settings",
    "SamplingSettings": ".settings",
    "SurveySettings": ".survey",
    "run_survey": ".survey",
}
"""Each public name and the module it comes from."""

__all__ = [
    "AttentionRhythmMonitor",
    "BatchKeys",
    "CouplingSettings",
    "FutureAttentionInfluence",
    "NanoGPT",
    "RhythmCoupling",
    "RhythmGRPO",
    "RhythmReport",
    "RhythmSettings",
    "RhythmTrace",
    "SamplingSettings",
    "SurveySettings",
    "WindowedAverageAttentionDistance",
    "WordTokenizer",
    "__version__",
    "capture_group_maps",
    "capture_rhythm",
    "credit_gamma",
    "knockout_nll",
    "rhythm_capture",
    "run_survey",
]


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:  # a subpackage, as `lightning_reasonattn.functional.waad` reads it: imported on first use
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
