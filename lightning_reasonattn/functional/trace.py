"""The RhythmTrace record, and the dense route from full attention maps to a trace.

The dense route ([`rhythm_from_attentions`][rhythm_from_attentions]) applies the definitions literally to stacked ``N x
N`` maps; it is the reference that [`lightning_reasonattn.capture_rhythm`][lightning_reasonattn.capture_rhythm]
(blockwise, no ``N x N`` map kept) is tested against, and a convenient tool for anyone who already holds attention maps.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..deprecation import renamed_attribute, renamed_keywords
from . import defaults
from ._checks import check_fraction, check_positive_int, check_response_mask
from .attention import as_float, group_mean, head_backward_distance, split_heads
from .attention import fai as fai_fn
from .attention import waad as waad_fn
from .tokens import anchor_tokens, dominated_anchors, intro_tokens, preplan_tokens, waad_jumps


@renamed_keywords(k="look_back")
@dataclass
class RhythmTrace:
    """Everything measured about the rhythm of a batch of sequences.

    Shapes: ``B`` sequences of ``N`` tokens (padding included), ``L_sel`` selected layers of ``H`` query
    heads, ``k`` heads per group.

    Attributes:
        waad: ``[B, N]`` float32, WAAD over the local heads; NaN outside the response.
        fai: ``[B, N]`` float32, FAI over the global heads; NaN outside the response and where the horizon
            holds no response token.
        waad_jumps: ``[B, N]`` float32, ``|WAAD[t] - WAAD[t+1]|``; NaN where undefined.
        preplan: ``[B, N]`` bool, preplan tokens (largest WAAD jumps).
        anchor: ``[B, N]`` bool, anchor tokens (largest FAI).
        dominated: ``[B, N]`` bool, locally dominated anchors.
        intro: ``[B, N]`` bool, introductory tokens of the dominated anchors.
        head_distance: ``[B, L_sel, H]`` float32, mean backward distance of every head.
        local_heads: ``[B, k]`` int64 flat indices ``l * H + h`` into the ``L_sel x H`` pool.
        global_heads: ``[B, k]`` int64, same indexing.
        layers: the 0-based layer indices used, in order.
        response_mask: ``[B, N]`` bool.
        q: the top fraction used for preplan and anchor tokens.
        look_back: the look-back used for dominated anchors (``k`` before 0.2).
    """

    waad: torch.Tensor
    fai: torch.Tensor
    waad_jumps: torch.Tensor
    preplan: torch.Tensor
    anchor: torch.Tensor
    dominated: torch.Tensor
    intro: torch.Tensor
    head_distance: torch.Tensor
    local_heads: torch.Tensor
    global_heads: torch.Tensor
    layers: list[int]
    response_mask: torch.Tensor
    q: float = defaults.Q
    look_back: int = defaults.LOOK_BACK

    k = renamed_attribute("k", "look_back")

    def to(self, device: torch.device | str) -> RhythmTrace:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return RhythmTrace(**moved)


@renamed_keywords(k="look_back")
def select_tokens(
    waad: torch.Tensor, fai: torch.Tensor, q: float = defaults.Q, look_back: int = defaults.LOOK_BACK
) -> dict[str, torch.Tensor]:
    """Jumps and every token set from the two signals.

    Args:
        waad: ``[B, N]``, NaN outside the response.
        fai: ``[B, N]``, NaN where undefined.
        q: top fraction of preplan and anchor tokens.
        look_back: look-back of dominated anchors and their introductory tokens.

    Returns:
        dict with ``waad_jumps`` (float32) and ``preplan``, ``anchor``, ``dominated``, ``intro`` (bool),
        each ``[B, N]``.
    """
    q = check_fraction(q, "q")
    look_back = check_positive_int(look_back, "look_back")
    jumps = waad_jumps(waad)
    anchor = anchor_tokens(fai, q)
    dominated = dominated_anchors(waad, jumps, anchor, look_back)
    return {
        "waad_jumps": jumps,
        "preplan": preplan_tokens(jumps, q),
        "anchor": anchor,
        "dominated": dominated,
        "intro": intro_tokens(jumps, dominated, look_back),
    }


@renamed_keywords(k="look_back")
def trace_from_head_stats(
    head_distance: torch.Tensor,
    head_waad: torch.Tensor,
    head_fai: torch.Tensor,
    response_mask: torch.Tensor,
    layers: list[int],
    *,
    head_fraction: float = defaults.HEAD_FRACTION,
    q: float = defaults.Q,
    look_back: int = defaults.LOOK_BACK,
) -> RhythmTrace:
    """Assemble a trace from per-head statistics.

    Args:
        head_distance: ``[B, L_sel, H]`` mean backward distances.
        head_waad: ``[B, L_sel, H, N]`` WAAD of every single head.
        head_fai: ``[B, L_sel, H, N]`` FAI of every single head.
        response_mask: ``[B, N]`` bool.
        layers: the layer indices the statistics came from.

    Returns:
        The [`RhythmTrace`][RhythmTrace]; WAAD and FAI are the means over the local and global heads.
    """
    local, glob = split_heads(head_distance, head_fraction)
    w = group_mean(head_waad.flatten(1, 2), local)
    f = group_mean(head_fai.flatten(1, 2), glob)
    return RhythmTrace(
        waad=w,
        fai=f,
        head_distance=head_distance.float(),
        local_heads=local,
        global_heads=glob,
        layers=list(layers),
        response_mask=response_mask.bool(),
        q=q,
        look_back=look_back,
        **select_tokens(w, f, q, look_back),
    )


@renamed_keywords(k="look_back")
def rhythm_from_attentions(
    attentions: torch.Tensor,
    response_mask: torch.Tensor,
    layers: list[int] | None = None,
    window: int = defaults.WINDOW,
    horizon: tuple[int, int] = defaults.HORIZON,
    head_fraction: float = defaults.HEAD_FRACTION,
    q: float = defaults.Q,
    look_back: int = defaults.LOOK_BACK,
) -> RhythmTrace:
    """The dense reference: a trace from full attention maps of the selected layers.

    Averages the maps of each head group, then applies [`waad`][waad] and [`fai`][fai] to the group maps,
    exactly as the definitions read. Memory grows like ``L_sel * H * N^2``.

    Args:
        attentions: ``[B, L_sel, H, N, N]`` causal row-stochastic maps, e.g.
            ``torch.stack([out.attentions[l] for l in layers], 1)`` from an eager forward with
            ``output_attentions=True``.
        response_mask: ``[B, N]`` bool.
        layers: labels for the ``L_sel`` layers (default ``0 .. L_sel - 1``).

    Returns:
        The [`RhythmTrace`][RhythmTrace].
    """
    if attentions.ndim != 5:
        raise ValueError(
            f"attentions has shape {tuple(attentions.shape)}: expected [B, L_sel, H, N, N]; stack the "
            "per-layer maps along dim 1."
        )
    b, n_layers, n_heads, n, _ = attentions.shape
    mask = check_response_mask(response_mask, (b, n))
    distance = head_backward_distance(attentions, mask)
    local, glob = split_heads(distance, head_fraction)
    maps = as_float(attentions).flatten(1, 2)  # [B, P, N, N]
    a_loc = group_mean(maps, local)
    a_glob = group_mean(maps, glob)
    w = waad_fn(a_loc, mask, window)
    f = fai_fn(a_glob, mask, horizon)
    return RhythmTrace(
        waad=w,
        fai=f,
        head_distance=distance,
        local_heads=local,
        global_heads=glob,
        layers=list(layers) if layers is not None else list(range(n_layers)),
        response_mask=mask,
        q=q,
        look_back=look_back,
        **select_tokens(w, f, q, look_back),
    )
