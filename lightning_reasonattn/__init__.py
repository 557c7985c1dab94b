"""lightning_reasonattn: see and train the preplan-and-anchor attention rhythm of reasoning LMs."""

from .capture import capture_rhythm, rhythm_capture
from .functional import RhythmTrace, credit_gamma

__version__ = "0.1.0"

__all__ = ["RhythmTrace", "__version__", "capture_rhythm", "credit_gamma", "rhythm_capture"]
