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
from .bootstrap import bootstrap_ci, profile_sums
from .coupling import coupling_counts, local_peaks, response_counts, token_entropy
from .credit import RHYTHM_STRATEGIES, STRATEGIES, credit_gamma
from .knockout import choose_groups, knockout_sums, token_kind
from .logprobs import chunked_logprobs
from .settings import SPEC, RhythmSettings
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
    "RhythmSettings",
    "RhythmTrace",
    "SPEC",
    "anchor_tokens",
    "bootstrap_ci",
    "choose_groups",
    "chunked_logprobs",
    "coupling_counts",
    "credit_gamma",
    "dominated_anchors",
    "fai",
    "fai_counts",
    "group_mean",
    "head_backward_distance",
    "horizon_band",
    "intro_tokens",
    "knockout_sums",
    "local_peaks",
    "lower_median",
    "preplan_tokens",
    "profile_sums",
    "response_counts",
    "rhythm_from_attentions",
    "select_layers",
    "select_tokens",
    "split_heads",
    "token_kind",
    "token_entropy",
    "top_fraction",
    "trace_from_head_stats",
    "waad",
    "waad_jumps",
]
