"""Pure tensor math of the preplan-and-anchor rhythm (imports torch only).

Definitions: docs/rhythm.md. Every function is batched over leading dimensions and returns NaN (for
float signals) or False (for token sets) outside the response.
"""

from .attention import (
    fai,
    fai_counts,
    group_mean,
    head_backward_distance,
    horizon_band,
    select_layers,
    split_heads,
    waad,
)
from .credit import RHYTHM_STRATEGIES, STRATEGIES, credit_gamma
from .logprobs import chunked_logprobs
from .tokens import (
    anchor_tokens,
    dominated_anchors,
    intro_tokens,
    lower_median,
    preplan_tokens,
    top_fraction,
    waad_jumps,
)
from .trace import RhythmTrace, rhythm_from_attentions, select_tokens, trace_from_head_stats

__all__ = [
    "RHYTHM_STRATEGIES",
    "STRATEGIES",
    "RhythmTrace",
    "anchor_tokens",
    "chunked_logprobs",
    "credit_gamma",
    "dominated_anchors",
    "fai",
    "fai_counts",
    "group_mean",
    "head_backward_distance",
    "horizon_band",
    "intro_tokens",
    "lower_median",
    "preplan_tokens",
    "rhythm_from_attentions",
    "select_layers",
    "select_tokens",
    "split_heads",
    "top_fraction",
    "trace_from_head_stats",
    "waad",
    "waad_jumps",
]
