"""One sequence of a [`RhythmTrace`][lightning_reasonattn.RhythmTrace] as plain lists, the heatmap window, and the
colours the figures and the page share."""

from __future__ import annotations

import math
from typing import Any

from ..functional.trace import RhythmTrace

MISSING_MATPLOTLIB = (
    "matplotlib is not installed, so the rhythm report has no PNG pictures (the HTML page is written without "
    "them); install them with: pip install 'lightning-reasonattn[report]'"
)


# Colours shared by the figures and the page: WAAD (local heads), FAI (global heads), preplan, anchor marks.
WAAD_RGB = (37, 99, 235)


FAI_RGB = (5, 150, 105)


PREPLAN_COLOR = "#ea580c"


ANCHOR_COLOR = "#be123c"


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def sequence_data(trace: RhythmTrace, index: int, tokens: list[str] | None = None) -> dict[str, Any]:
    """Plain Python lists of one sequence of the trace (float NaN where undefined)."""
    b, n = trace.waad.shape
    if not -b <= index < b:
        raise IndexError(f"index={index} is out of range for a trace of {b} sequences; pass 0 <= index < {b}.")
    if tokens is not None and len(tokens) != n:
        raise ValueError(
            f"tokens has {len(tokens)} entries but the trace has {n} positions: pass one decoded string per "
            "position of the sequence, prompt and padding included (e.g. [tokenizer.decode([i]) for i in ids])."
        )

    def row(name: str) -> list:
        return getattr(trace, name)[index].detach().cpu().tolist()

    seq = {name: row(name) for name in ("waad", "fai", "waad_jumps", "preplan", "anchor", "dominated", "intro")}
    seq["response"] = trace.response_mask[index].detach().cpu().nonzero().flatten().tolist()
    seq["n"] = n
    return seq


def default_span(trace: RhythmTrace, index: int = 0, size: int = 128, lead: int | None = None) -> tuple[int, int]:
    """A window ``(start, stop)`` of at most ``size`` positions for the heatmaps, near the start of the response.

    It starts ``lead`` positions before the first response token (default ``size // 8``: a little of the
    prompt, which the response keeps looking at) and ends at the last response token at the latest, so a
    right-padded sequence shows no padding. Pass it to [`capture_group_maps`][lightning_reasonattn.capture_group_maps]
    as ``span``: the maps then cost ``size x size``, not ``N x N``.

    Args:
        trace: the trace of the batch.
        index: the sequence of the batch.
        size: the most positions in the window (>= 2).
        lead: prompt positions shown before the response.

    Returns:
        ``(start, stop)`` with ``0 <= start < stop <= N``.
    """
    if int(size) != size or size < 2:
        raise ValueError(f"size={size!r}: the window needs at least 2 positions; pass an int >= 2, e.g. 128.")
    size = int(size)
    response = trace.response_mask[index].detach().cpu().nonzero().flatten()
    n = trace.response_mask.shape[-1]
    if response.numel() == 0:
        return 0, min(n, size)
    first, last = int(response[0]), int(response[-1])
    lead = size // 8 if lead is None else max(0, int(lead))
    start = max(0, first - lead)
    stop = min(last + 1, start + size)
    if stop - start < 2:  # a one-token window: widen it
        start = max(0, stop - 2)
        stop = min(n, start + 2)
    return start, stop


def is_finite(x: float) -> bool:
    return not math.isnan(x) and not math.isinf(x)
