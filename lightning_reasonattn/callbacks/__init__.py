"""Lightning callbacks that watch the attention rhythm of the causal LM inside any existing Trainer.

* [`AttentionRhythmMonitor`][lightning_reasonattn.callbacks.monitor.AttentionRhythmMonitor]: WAAD, FAI and their
  coupling as torchmetrics, logged every ``n`` steps and over validation;
* [`RhythmReport`][lightning_reasonattn.callbacks.rhythm_report.RhythmReport]: the pictures and the token page of
  one sequence.
"""

from .inputs import BatchInputs, find_causal_lm
from .monitor import AttentionRhythmMonitor
from .rhythm_report import RhythmReport

__all__ = ["AttentionRhythmMonitor", "BatchInputs", "RhythmReport", "find_causal_lm"]
