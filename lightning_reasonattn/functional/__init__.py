"""Pure tensor math of the preplan-and-anchor rhythm (imports torch only; no settings: the spec's defaults are plain
constants in [`defaults`][lightning_reasonattn.functional.defaults], the settings objects live in
[`lightning_reasonattn.settings`][lightning_reasonattn.settings]).

Definitions: docs/rhythm.md. Every function is batched over leading dimensions and returns NaN (for
float signals) or False (for token sets) outside the response.
"""

from ..deprecation import moved_names
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
from .coupling import (
    COUPLING_RATIOS,
    coupling_counts,
    coupling_ratios,
    direction_ratios,
    entropy_peak_counts,
    local_peaks,
    ratio_of_sums,
    response_counts,
    token_entropy,
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
    "COUPLING_RATIOS",
    "RHYTHM_STRATEGIES",
    "STRATEGIES",
    "RhythmTrace",
    "anchor_tokens",
    "bootstrap_ci",
    "chunked_logprobs",
    "coupling_counts",
    "coupling_ratios",
    "credit_gamma",
    "direction_ratios",
    "dominated_anchors",
    "entropy_peak_counts",
    "fai",
    "fai_counts",
    "group_mean",
    "head_backward_distance",
    "horizon_band",
    "intro_tokens",
    "local_peaks",
    "lower_median",
    "preplan_tokens",
    "profile_sums",
    "ratio_of_sums",
    "response_counts",
    "rhythm_from_attentions",
    "select_layers",
    "select_tokens",
    "split_heads",
    "token_entropy",
    "top_fraction",
    "trace_from_head_stats",
    "waad",
    "waad_jumps",
]

# Moved to lightning_reasonattn.settings in 0.2: still importable from here, with a DeprecationWarning.
__getattr__ = moved_names(
    __name__,
    {
        "RhythmSettings": ("lightning_reasonattn.settings", "RhythmSettings"),
        "SPEC": ("lightning_reasonattn.settings", "SPEC"),
    },
)
