"""Pure tensor math of the preplan-and-anchor rhythm (imports torch only; no settings: the spec's defaults are plain
constants in [`defaults`][lightning_reasonattn.functional.defaults], the settings objects live in
[`lightning_reasonattn.settings`][lightning_reasonattn.settings]).

Definitions: docs/rhythm.md. Every function is batched over leading dimensions and returns NaN (for
float signals) or False (for token sets) outside the response.
"""

import importlib
from typing import TYPE_CHECKING

from ..deprecation import moved_names

if TYPE_CHECKING:  # what static tools (and the API docs) read; at run time __getattr__ imports each on first use
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
    from .knockout import choose_groups, knockout_sums, token_kind
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

_HOME = {
    "COUPLING_RATIOS": "coupling",
    "RHYTHM_STRATEGIES": "credit",
    "RhythmTrace": "trace",
    "STRATEGIES": "credit",
    "anchor_tokens": "tokens",
    "bootstrap_ci": "bootstrap",
    "choose_groups": "knockout",
    "chunked_logprobs": "logprobs",
    "coupling_counts": "coupling",
    "coupling_ratios": "coupling",
    "credit_gamma": "credit",
    "direction_ratios": "coupling",
    "dominated_anchors": "tokens",
    "entropy_peak_counts": "coupling",
    "fai": "attention",
    "fai_counts": "attention",
    "group_mean": "attention",
    "head_backward_distance": "attention",
    "horizon_band": "attention",
    "intro_tokens": "tokens",
    "knockout_sums": "knockout",
    "local_peaks": "coupling",
    "lower_median": "tokens",
    "preplan_tokens": "tokens",
    "profile_sums": "bootstrap",
    "ratio_of_sums": "coupling",
    "response_counts": "coupling",
    "rhythm_from_attentions": "trace",
    "select_layers": "attention",
    "select_tokens": "trace",
    "split_heads": "attention",
    "token_entropy": "coupling",
    "token_kind": "knockout",
    "top_fraction": "tokens",
    "trace_from_head_stats": "trace",
    "waad": "attention",
    "waad_jumps": "tokens",
}
"""Each public name and the module of this package it comes from (imported on first use)."""
_MODULES = (
    "attention",
    "bootstrap",
    "coupling",
    "credit",
    "defaults",
    "keyed",
    "knockout",
    "logprobs",
    "tokens",
    "trace",
)

__all__ = [
    "COUPLING_RATIOS",
    "RHYTHM_STRATEGIES",
    "STRATEGIES",
    "RhythmTrace",
    "anchor_tokens",
    "bootstrap_ci",
    "choose_groups",
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
    "knockout_sums",
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
    "token_kind",
    "token_entropy",
    "top_fraction",
    "trace_from_head_stats",
    "waad",
    "waad_jumps",
]

# Moved to lightning_reasonattn.settings in 0.2: still importable from here, with a DeprecationWarning.
_moved = moved_names(
    __name__,
    {
        "RhythmSettings": ("lightning_reasonattn.settings", "RhythmSettings"),
        "SPEC": ("lightning_reasonattn.settings", "SPEC"),
    },
)


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        if name in _MODULES:  # `functional.coupling.within`, as before the names were imported on first use
            return importlib.import_module(f"{__name__}.{name}")
        return _moved(name)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
