"""Capture the rhythm out of a live forward pass of a causal LM, block-wise (no ``N x N`` map is kept).

* [`capture_rhythm`][lightning_reasonattn.capture.rhythm.capture_rhythm]: one no-grad forward, the
  [`RhythmTrace`][lightning_reasonattn.RhythmTrace] out;
* [`rhythm_capture`][lightning_reasonattn.capture.rhythm.rhythm_capture]: the same inside a forward you make
  yourself (an RL step's, whose logits you also need);
* [`capture_group_maps`][lightning_reasonattn.capture.rhythm.capture_group_maps]: a window of the local- and
  global-head maps, for pictures;
* [`knockout_nll`][lightning_reasonattn.capture.knockout.knockout_nll]: every token's NLL in one forward where chosen
  tokens are hidden from the later ones (are anchors causal?).

Modules: ``rhythm`` (the API and its input checks), ``route`` (which way a model's attention is reached),
``hf_attention`` (routing a transformers model's attention through the capture), ``sdpa`` (watching the
``scaled_dot_product_attention`` calls of any other model), ``modules`` (that model's attention modules, and how
to call it), ``blockwise`` (attention probabilities a block of rows at a time, reduced at once), ``eager`` (the
fallback for transformers models whose attention bypasses transformers' interface), ``knockout`` (the same routes
running the attention on a mask that hides chosen tokens).
"""

from .hf_attention import check_causal, unwrap_causal_lm
from .knockout import knockout_nll
from .rhythm import capture_group_maps, capture_rhythm, measuring, rhythm_capture

__all__ = [
    "capture_group_maps",
    "capture_rhythm",
    "check_causal",
    "knockout_nll",
    "measuring",
    "rhythm_capture",
    "unwrap_causal_lm",
]
