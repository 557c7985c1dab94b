"""matplotlib figures of one sequence: ``"heatmaps"`` (local- and global-head mean attention over a window of the
sequence: the saw-tooth near the diagonal, the vertical stripes of anchors) and ``"curves"`` (WAAD and FAI over the
response, preplan and anchor tokens marked). Needs matplotlib (``pip install 'lightning-reasonattn[report]'``),
imported on first use.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from ..functional.trace import RhythmTrace
from .escape import one_line, shorten
from .sequence import ANCHOR_COLOR, FAI_RGB, PREPLAN_COLOR, WAAD_RGB, hex_color, sequence_data


def matplotlib_classes():
    """``(Figure, FigureCanvasAgg, PowerNorm)``, imported on first use; ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg, PowerNorm


def _label(text: str, width: int = 14) -> str:
    """A token as a short one-line label for a plot."""
    return shorten(one_line(text), width, "…")


def rhythm_figures(
    trace: RhythmTrace,
    tokens: list[str] | None = None,
    maps: dict[str, torch.Tensor] | None = None,
    span: tuple[int, int] | None = None,
    index: int = 0,
    annotate: int = 5,
) -> dict[str, Any]:
    """matplotlib figures of the rhythm of one sequence (Agg canvas, not registered with pyplot).

    Args:
        trace: from [`capture_rhythm`][lightning_reasonattn.capture_rhythm].
        tokens: the decoded token of every position (``N`` strings); used to label the strongest anchors and,
            in short windows, the heatmap axes.
        maps: ``{"local": [B, w, w] or [w, w], "global": ...}`` from
            [`capture_group_maps`][lightning_reasonattn.capture_group_maps]; without it there is no ``"heatmaps"``
            figure.
        span: the ``(start, stop)`` the maps were captured over (may be left out only when ``w == N``).
        index: the sequence of the batch.
        annotate: how many of the highest-FAI anchor tokens get their text written on the FAI curve.

    Returns:
        ``{"curves": Figure}`` and, with ``maps``, ``"heatmaps"``: a figure with the local- and global-head
        maps side by side, rows = queries, columns = keys, preplan rows and anchor columns ticked on the edges.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'lightning-reasonattn[report]'``).
    """
    seq = sequence_data(trace, index, tokens)
    figures = {"curves": _curves_figure(seq, tokens, annotate)}
    if maps is not None:
        figures["heatmaps"] = _heatmap_figure(seq, tokens, maps, span, index)
    return figures


def _curves_figure(seq: dict[str, Any], tokens: list[str] | None, annotate: int):
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_w, ax_f = fig.subplots(2, 1, sharex=True)
    pos = seq["response"]
    waad = [seq["waad"][p] for p in pos]
    fai = [seq["fai"][p] for p in pos]
    preplan = [p for p in pos if seq["preplan"][p]]
    anchor = [p for p in pos if seq["anchor"][p]]
    ax_w.plot(pos, waad, color=hex_color(WAAD_RGB), lw=1.3, label="WAAD (local heads)")
    ax_w.plot(
        preplan, [seq["waad"][p] for p in preplan], "o", ms=4, color=PREPLAN_COLOR, label="preplan (WAAD jump after)"
    )
    ax_f.plot(pos, fai, color=hex_color(FAI_RGB), lw=1.3, label="FAI (global heads)")
    ax_f.plot(anchor, [seq["fai"][p] for p in anchor], "D", ms=4, color=ANCHOR_COLOR, label="anchor")
    if tokens is not None and annotate > 0:
        gap = max(1, len(pos) // (4 * annotate))  # labels of neighbouring anchors would overlap
        top: list[int] = []
        for p in sorted(anchor, key=lambda p: (-seq["fai"][p], p)):
            if len(top) < annotate and all(abs(p - other) > gap for other in top):
                top.append(p)
        for p in top:
            ax_f.annotate(
                _label(tokens[p]),
                (p, seq["fai"][p]),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=ANCHOR_COLOR,
                parse_math=False,
            )
    ax_w.set_ylabel("WAAD")
    ax_f.set_ylabel("FAI")
    ax_f.set_xlabel("position in the sequence (response tokens)")
    ax_w.set_title("WAAD and FAI over the response", fontsize=11, loc="left")
    for ax in (ax_w, ax_f):
        ax.grid(alpha=0.25)
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
        ax.margins(x=0.01, y=0.15)
    return fig


def _heatmap_figure(seq: dict[str, Any], tokens: list[str] | None, maps: dict[str, torch.Tensor], span, index: int):
    import numpy as np

    Figure, FigureCanvasAgg, PowerNorm = matplotlib_classes()
    missing = {"local", "global"} - set(maps)
    if missing:
        raise ValueError(
            f"maps has keys {sorted(maps)}, not {sorted(missing)}: pass the dict returned by capture_group_maps."
        )
    arrays = {}
    for name in ("local", "global"):
        m = maps[name]
        m = m[index] if m.ndim == 3 else m
        arrays[name] = m.detach().double().cpu().numpy()
    w = arrays["local"].shape[-1]
    if span is None:
        if w != seq["n"]:
            raise ValueError(
                f"the maps cover {w} of the {seq['n']} positions: pass span=(start, stop), the span given to "
                "capture_group_maps."
            )
        span = (0, w)
    start, stop = int(span[0]), int(span[1])
    if stop - start != w or any(a.shape != (w, w) for a in arrays.values()):
        raise ValueError(
            f"span={span!r} covers {stop - start} positions but the maps are {w} x {w}; pass the same span."
        )

    fig = Figure(figsize=(11, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    extent = (start - 0.5, stop - 0.5, stop - 0.5, start - 0.5)
    inside = [p for p in seq["response"] if start <= p < stop]
    preplan = [p for p in inside if seq["preplan"][p]]
    anchor = [p for p in inside if seq["anchor"][p]]
    upper = np.triu_indices(w, 1)
    titles = {"local": ("Blues", "local heads (WAAD)"), "global": ("Greens", "global heads (FAI)")}
    for ax, name in zip(axes, ("local", "global"), strict=True):
        cmap, title = titles[name]
        data = arrays[name].copy()
        data[upper] = np.nan  # causal: no attention to the future
        values = data[np.isfinite(data)]
        vmax = float(np.quantile(values, 0.995)) if values.size else 1.0
        image = ax.imshow(
            data,
            cmap=cmap,
            norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=max(vmax, 1e-6)),
            extent=extent,
            interpolation="nearest",
            aspect="equal",
        )
        image.set_gid(name)
        if inside and inside[0] > start:  # where the response starts
            ax.axhline(inside[0] - 0.5, color="0.45", lw=0.8, ls=":")
            ax.axvline(inside[0] - 0.5, color="0.45", lw=0.8, ls=":")
        edge = start - 0.5
        ax.plot(anchor, [edge] * len(anchor), "v", ms=4, color=ANCHOR_COLOR, clip_on=False, label="anchor (column)")
        ax.plot([edge] * len(preplan), preplan, ">", ms=4, color=PREPLAN_COLOR, clip_on=False, label="preplan (row)")
        ax.set_xlim(start - 0.5, stop - 0.5)
        ax.set_ylim(stop - 0.5, start - 0.5)
        if tokens is not None and w <= 40:
            ticks = list(range(start, stop))
            labels = [_label(tokens[p], 10) for p in ticks]
            ax.set_xticks(ticks, labels, rotation=90, fontsize=6, parse_math=False)
            ax.set_yticks(ticks, labels, fontsize=6, parse_math=False)
        else:
            ax.set_xlabel("key position")
            ax.set_ylabel("query position")
        ax.set_title(f"{title}, positions {start}-{stop - 1}", fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.75, label="mean attention (sqrt scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def figure_png(figure, dpi: int = 90) -> bytes:
    """The PNG bytes of a figure."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
