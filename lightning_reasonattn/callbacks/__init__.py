"""Lightning callbacks that watch the attention rhythm of the causal LM inside any existing Trainer.

* [`AttentionRhythmMonitor`][lightning_reasonattn.callbacks.monitor.AttentionRhythmMonitor]: WAAD, FAI and their
  coupling as torchmetrics, logged every ``n`` steps and over validation;
* [`RhythmReport`][lightning_reasonattn.callbacks.rhythm_report.RhythmReport]: the pictures and the token page of
  one sequence.

Both read a batch through ``inputs``: the keys of a mapping
([`BatchKeys`][lightning_reasonattn.callbacks.inputs.BatchKeys]) or a function of the batch.
"""

from .base import RhythmCallback
from .inputs import BatchKeys, find_causal_lm
from .monitor import AttentionRhythmMonitor
from .rhythm_report import RhythmReport

__all__ = ["AttentionRhythmMonitor", "BatchKeys", "RhythmCallback", "RhythmReport", "find_causal_lm"]
