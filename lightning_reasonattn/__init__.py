"""lightning_reasonattn: see and train the preplan-and-anchor attention rhythm of reasoning LMs."""

from .callbacks import AttentionRhythmMonitor, BatchKeys, RhythmReport
from .capture import capture_group_maps, capture_rhythm, knockout_nll, rhythm_capture
from .functional import RhythmSettings, RhythmTrace, credit_gamma
from .grpo import RhythmGRPO
from .metrics import FutureAttentionInfluence, RhythmCoupling, WindowedAverageAttentionDistance
from .models import NanoGPT, WordTokenizer
from .survey import SurveySettings, run_survey

__version__ = "0.1.0"

__all__ = [
    "AttentionRhythmMonitor",
    "BatchKeys",
    "FutureAttentionInfluence",
    "NanoGPT",
    "RhythmCoupling",
    "RhythmGRPO",
    "RhythmReport",
    "RhythmSettings",
    "RhythmTrace",
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
