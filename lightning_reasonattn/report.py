"""Pictures of the rhythm of one sequence: attention heatmaps, WAAD / FAI curves and a token-level HTML page.

Pure rendering, no Lightning: a [`RhythmTrace`][lightning_reasonattn.RhythmTrace], the decoded tokens of the sequence
and (for the heatmaps) the group maps of [`capture_group_maps`][lightning_reasonattn.capture_group_maps] go in;
matplotlib figures, an HTML string or files come out.

* [`rhythm_figures`][rhythm_figures]: ``"heatmaps"`` (local- and global-head mean attention over a window of the
  sequence: the saw-tooth near the diagonal, the vertical stripes of anchors) and ``"curves"`` (WAAD and FAI over the
  response, preplan and anchor tokens marked). Needs matplotlib (``pip install 'lightning-reasonattn[report]'``).
* [`rhythm_html`][rhythm_html]: one self-contained page (inline CSS and SVG, no script, no network): the response tokens
  coloured by WAAD or FAI (a toggle), preplan and anchor tokens marked, the numbers on hover. Needs nothing.
* [`write_report`][write_report]: both, as files (the PNGs are also embedded in the page).

Token text is model output, hence untrusted: it is only ever HTML-escaped and shown, never interpreted.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from pathlib import Path
from typing import Any

import torch

from .functional.trace import RhythmTrace

MISSING_MATPLOTLIB = (
    "matplotlib is not installed, so the rhythm report has no PNG pictures (the HTML page is written without "
    "them); install them with: pip install 'lightning-reasonattn[report]'"
)
# Colours shared by the figures and the page: WAAD (local heads), FAI (global heads), preplan, anchor marks.
WAAD_RGB = (37, 99, 235)
FAI_RGB = (5, 150, 105)
PREPLAN_COLOR = "#ea580c"
ANCHOR_COLOR = "#be123c"


# ---------------------------------------------------------------------------------------------- data
def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _sequence(trace: RhythmTrace, index: int, tokens: list[str] | None = None) -> dict[str, Any]:
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


def _finite(x: float) -> bool:
    return not math.isnan(x) and not math.isinf(x)


# ---------------------------------------------------------------------------------------------- figures
def _matplotlib():
    """``(Figure, FigureCanvasAgg, PowerNorm)``, imported on first use; ImportError without matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg, PowerNorm


def _label(text: str, width: int = 14) -> str:
    """A token as a short one-line label for a plot."""
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return shown if len(shown) <= width else shown[: width - 1] + "…"


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
    seq = _sequence(trace, index, tokens)
    figures = {"curves": _curves_figure(seq, tokens, annotate)}
    if maps is not None:
        figures["heatmaps"] = _heatmap_figure(seq, tokens, maps, span, index)
    return figures


def _curves_figure(seq: dict[str, Any], tokens: list[str] | None, annotate: int):
    Figure, FigureCanvasAgg, _ = _matplotlib()
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_w, ax_f = fig.subplots(2, 1, sharex=True)
    pos = seq["response"]
    waad = [seq["waad"][p] for p in pos]
    fai = [seq["fai"][p] for p in pos]
    preplan = [p for p in pos if seq["preplan"][p]]
    anchor = [p for p in pos if seq["anchor"][p]]
    ax_w.plot(pos, waad, color=_hex(WAAD_RGB), lw=1.3, label="WAAD (local heads)")
    ax_w.plot(
        preplan, [seq["waad"][p] for p in preplan], "o", ms=4, color=PREPLAN_COLOR, label="preplan (WAAD jump after)"
    )
    ax_f.plot(pos, fai, color=_hex(FAI_RGB), lw=1.3, label="FAI (global heads)")
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

    Figure, FigureCanvasAgg, PowerNorm = _matplotlib()
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


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;max-width:1040px;
margin:1.5rem auto;padding:0 1rem;line-height:1.45}
h1{font-size:1.35rem;margin:.2rem 0 .6rem}h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
.summary{color:#4b5563;font-size:.9rem}
.mode{position:absolute;opacity:0;pointer-events:none}
.toggle label{display:inline-block;padding:.2rem .8rem;border:1px solid #9ca3af;cursor:pointer;font-size:.9rem;
user-select:none}
.toggle label:first-child{border-radius:4px 0 0 4px}.toggle label:last-child{border-radius:0 4px 4px 0;margin-left:-1px}
#mode-waad:checked~.toggle label[for=mode-waad]{background:#2563eb;color:#fff;border-color:#2563eb}
#mode-fai:checked~.toggle label[for=mode-fai]{background:#059669;color:#fff;border-color:#059669}
#mode-waad:focus-visible~.toggle label[for=mode-waad],#mode-fai:focus-visible~.toggle label[for=mode-fai]{
outline:2px solid #111827}
.legend{font-size:.82rem;color:#4b5563;margin:.5rem 0}
.legend .bar{display:inline-block;width:120px;height:.8em;vertical-align:middle;border:1px solid #d1d5db}
.bar.w{background:linear-gradient(90deg,rgba(37,99,235,.05),rgba(37,99,235,.85))}
.bar.f{background:linear-gradient(90deg,rgba(5,150,105,.05),rgba(5,150,105,.85))}
#mode-waad:checked~.legend .for-fai,#mode-fai:checked~.legend .for-waad{display:none}
.key{display:inline-block;padding:0 .25rem;margin:0 .2rem}
.tokens{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88rem;white-space:pre-wrap;
word-break:break-word;line-height:2;border:1px solid #e5e7eb;border-radius:6px;padding:.6rem .8rem}
.tok{border-radius:2px;box-shadow:inset -1px 0 0 rgba(0,0,0,.07)}
#mode-waad:checked~.tokens .tok{background:var(--w)}
#mode-fai:checked~.tokens .tok{background:var(--f)}
.preplan{border-bottom:3px solid #ea580c}
.anchor{outline:2px solid #be123c;outline-offset:-1px}
.anchor.dominated{outline-style:dashed}
.intro{border-bottom-style:double}
.tok:hover{box-shadow:0 0 0 2px #111827}
.nan{color:#6b7280}
.ctl{color:#9ca3af}
.prompt{color:#6b7280;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.82rem;
white-space:pre-wrap;word-break:break-word}
svg{display:block;max-width:100%;height:auto}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#4b5563}
table{border-collapse:collapse;font-size:.8rem}
td,th{padding:.1rem .5rem;border-bottom:1px solid #f3f4f6;text-align:right}
td.t{text-align:left;font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre}
img{max-width:100%;height:auto;border:1px solid #e5e7eb;margin:.3rem 0}
"""

_SPECIAL = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_code(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _visible(text: str) -> str:
    """HTML for a token's text: escaped; newlines kept (with a visible mark), other control characters escaped."""
    if text == "":
        return '<span class="ctl">∅</span>'
    out = []
    for ch in text:
        if ch == "\n":
            out.append('<span class="ctl">↵</span>\n')
        elif ch == "\t":
            out.append("\t")
        elif not ch.isprintable() and ch != " ":
            out.append(f'<span class="ctl">{_escape_code(ch)}</span>')
        else:
            out.append(html.escape(ch, quote=True))
    return "".join(out)


def _one_line(text: str) -> str:
    """A token for a tooltip or a table cell: control characters written as escapes (not yet HTML-escaped)."""
    return "".join(_SPECIAL.get(ch) or (ch if ch.isprintable() else repr(ch)[1:-1]) for ch in text)


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if _finite(value) else "n/a"


def _marks(seq: dict[str, Any], p: int) -> list[str]:
    return [name for name in ("preplan", "anchor", "dominated", "intro") if seq[name][p]]


def _scale(values: list[float]) -> float:
    finite = [v for v in values if _finite(v)]
    top = max(finite, default=0.0)
    return top if top > 0 else 1.0


def _range(values: list[float]) -> tuple[float, float]:
    """``(lowest, highest)`` finite value: the colour scale of the token page."""
    finite = [v for v in values if _finite(v)]
    return (min(finite), max(finite)) if finite else (0.0, 1.0)


def _rgba(rgb: tuple[int, int, int], value: float, scale: tuple[float, float]) -> str:
    """Colour of a token: from nearly transparent at the lowest value of the response to strong at the highest."""
    if not _finite(value):
        return "transparent"
    lo, hi = scale
    share = (value - lo) / (hi - lo) if hi > lo else 1.0
    alpha = 0.05 + 0.8 * min(1.0, max(0.0, share))
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.3f})"


def _token_span(seq: dict[str, Any], tokens: list[str], p: int, scales: tuple) -> str:
    w, f, d = seq["waad"][p], seq["fai"][p], seq["waad_jumps"][p]
    marks = _marks(seq, p)
    tip = f"#{p} {_one_line(tokens[p])!r}  WAAD {_fmt(w)}  jump {_fmt(d)}  FAI {_fmt(f)}"
    if marks:
        tip += "  [" + ", ".join(marks) + "]"
    classes = " ".join(["tok", *marks, *(["nan"] if not _finite(w) and not _finite(f) else [])])
    style = f"--w:{_rgba(WAAD_RGB, w, scales[0])};--f:{_rgba(FAI_RGB, f, scales[1])}"
    data = " ".join(f'data-{key}="{value!r}"' for key, value in (("waad", w), ("fai", f), ("jump", d)))
    return (
        f'<span class="{classes}" data-pos="{p}" {data} style="{style}" title="{html.escape(tip, quote=True)}">'
        f"{_visible(tokens[p])}</span>"
    )


def _polyline_segments(points: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Split at NaN values: one list of points per finite run."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if _finite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _curve_svg(seq, tokens, name: str, rgb, mark: str, color: str, width: int = 980, height: int = 150) -> str:
    """An inline SVG line plot of one signal over the response, ``mark`` tokens as dots with a tooltip."""
    pos = seq["response"]
    left, right, top, bottom = 48, 10, 10, 22
    x0, x1 = pos[0], max(pos[-1], pos[0] + 1)
    values = [seq[name][p] for p in pos]
    vmax = _scale(values)

    def sx(p: float) -> float:
        return left + (p - x0) / (x1 - x0) * (width - left - right)

    def sy(v: float) -> float:
        return top + (1 - v / vmax) * (height - top - bottom)

    label = "WAAD" if name == "waad" else "FAI"
    parts = [
        f'<svg class="curve" data-signal="{name}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{label} over the response">',
        f'<line x1="{left}" y1="{sy(0):.1f}" x2="{width - right}" y2="{sy(0):.1f}" stroke="#d1d5db"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{sy(0):.1f}" stroke="#d1d5db"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{_fmt(vmax, 3)}</text>',
        f'<text x="{left - 4}" y="{sy(0):.1f}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 6}">{x0}</text>',
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{x1}</text>',
        f'<text x="{width / 2:.0f}" y="{height - 6}" text-anchor="middle">{label} (position)</text>',
    ]
    for run in _polyline_segments([(p, v) for p, v in zip(pos, values, strict=True)]):
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in run)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{_hex(rgb)}" stroke-width="1.4"/>')
    for p in pos:
        v = seq[name][p]
        if seq[mark][p] and _finite(v):
            tip = html.escape(f"#{p} {_one_line(tokens[p])!r}  {label} {_fmt(v)}  [{mark}]", quote=True)
            parts.append(
                f'<circle class="{mark}" data-pos="{p}" cx="{sx(p):.1f}" cy="{sy(v):.1f}" r="3" fill="{color}">'
                f"<title>{tip}</title></circle>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _legend(scales: tuple) -> str:
    (w_lo, w_hi), (f_lo, f_hi) = scales
    return (
        '<div class="legend">'
        f'<span class="for-waad">WAAD {_fmt(w_lo, 3)} <span class="bar w"></span> {_fmt(w_hi, 3)} '
        "(how far the local heads look back)</span>"
        f'<span class="for-fai">FAI {_fmt(f_lo, 3)} <span class="bar f"></span> {_fmt(f_hi, 3)} '
        "(how much later tokens come back, through the global heads)</span> · "
        '<span class="key preplan">preplan</span><span class="key anchor">anchor</span>'
        '<span class="key anchor dominated">dominated anchor</span> · hover a token for its numbers</div>'
    )


def rhythm_html(
    trace: RhythmTrace,
    tokens: list[str],
    index: int = 0,
    title: str = "Rhythm report",
    images: dict[str, bytes] | None = None,
) -> str:
    """One self-contained HTML page of the rhythm of one sequence.

    The response tokens are coloured by WAAD or by FAI (a toggle; pure CSS, no script), preplan tokens are
    underlined, anchor tokens boxed (dashed: locally dominated), and hovering a token shows its position,
    WAAD, WAAD jump and FAI. Below: inline SVG curves of WAAD and FAI, the PNG ``images`` (embedded as
    ``data:`` URIs) and a table of every number. The page loads nothing from the network.

    Every span of a response token carries its numbers as ``data-pos``, ``data-waad``, ``data-fai`` and
    ``data-jump`` attributes (Python ``repr`` of the float, ``nan`` where undefined) and its marks as classes
    (``preplan``, ``anchor``, ``dominated``, ``intro``), so the page can also be read by a program.

    Args:
        trace: from [`capture_rhythm`][lightning_reasonattn.capture_rhythm].
        tokens: the decoded token of every position (``N`` strings); HTML-escaped, never interpreted.
        index: the sequence of the batch.
        title: the page's heading (escaped).
        images: ``{name: PNG bytes}`` to embed, e.g. from [`figure_png`][figure_png].

    Returns:
        the page, as a string.
    """
    seq = _sequence(trace, index, tokens)
    pos = seq["response"]
    response = set(pos)
    scales = (_range([seq["waad"][p] for p in pos]), _range([seq["fai"][p] for p in pos]))
    first = pos[0] if pos else seq["n"]
    prompt = "".join(_visible(tokens[p]) for p in range(first) if p not in response)
    body = "".join(_token_span(seq, tokens, p, scales) for p in pos)
    counts = {name: sum(bool(seq[name][p]) for p in pos) for name in ("preplan", "anchor", "dominated", "intro")}

    def mean(name: str) -> str:
        finite = [seq[name][p] for p in pos if _finite(seq[name][p])]
        return _fmt(sum(finite) / len(finite)) if finite else "n/a"

    summary = (
        f"{len(pos)} response tokens of {seq['n']} · mean WAAD {mean('waad')} · mean FAI {mean('fai')} · "
        f"{counts['preplan']} preplan, {counts['anchor']} anchor ({counts['dominated']} locally dominated, "
        f"{counts['intro']} introductory) tokens · layers {', '.join(map(str, trace.layers))} · q = {trace.q}"
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="summary">{html.escape(summary)}</p>',
        f'<details><summary>Prompt ({first} tokens)</summary><div class="prompt">{prompt}</div></details>',
        "<h2>Response</h2>",
        '<input type="radio" name="signal" id="mode-waad" class="mode" checked>',
        '<input type="radio" name="signal" id="mode-fai" class="mode">',
        '<div class="toggle"><label for="mode-waad">WAAD</label><label for="mode-fai">FAI</label></div>',
        _legend(scales),
        f'<div class="tokens">{body}</div>',
        "<h2>Curves</h2>",
        _curve_svg(seq, tokens, "waad", WAAD_RGB, "preplan", PREPLAN_COLOR),
        _curve_svg(seq, tokens, "fai", FAI_RGB, "anchor", ANCHOR_COLOR),
    ]
    if images:
        out.append("<h2>Pictures</h2>")
        for name, png in images.items():
            data = base64.b64encode(png).decode("ascii")
            out.append(f'<img alt="{html.escape(name, quote=True)}" src="data:image/png;base64,{data}">')
    out.append("<details><summary>All numbers</summary><table>")
    out.append("<tr><th>pos</th><th>token</th><th>WAAD</th><th>jump</th><th>FAI</th><th>marks</th></tr>")
    for p in pos:
        out.append(
            f"<tr><td>{p}</td><td class=t>{html.escape(_one_line(tokens[p]))}</td><td>{_fmt(seq['waad'][p])}</td>"
            f"<td>{_fmt(seq['waad_jumps'][p])}</td><td>{_fmt(seq['fai'][p])}</td>"
            f"<td>{' '.join(_marks(seq, p))}</td></tr>"
        )
    out.append("</table></details></body></html>")
    return "\n".join(out)


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|~")


def _markdown_text(text: str) -> str:
    """A token as inert Markdown: one line, HTML characters as entities, Markdown ones backslash-escaped."""
    out = []
    for ch in _one_line(text):
        if ch in "<>&":
            out.append(html.escape(ch))
        else:
            out.append("\\" + ch if ch in _MARKDOWN_SPECIAL else ch)
    return "".join(out)


def rhythm_markdown(trace: RhythmTrace, tokens: list[str], index: int = 0, title: str = "Rhythm report", top: int = 10):
    """A short Markdown summary of one sequence (for TensorBoard's text panel, which shows no full page).

    Args:
        trace: from [`capture_rhythm`][lightning_reasonattn.capture_rhythm].
        tokens: the decoded token of every position (``N`` strings); escaped, never interpreted.
        index: the sequence of the batch.
        title: first line, in bold (escaped).
        top: how many anchor and preplan tokens are listed (the highest FAI and the largest WAAD jumps).

    Returns:
        Markdown text; token text is escaped so that it renders as written.
    """
    seq = _sequence(trace, index, tokens)
    pos = seq["response"]

    def mean(name: str) -> str:
        finite = [seq[name][p] for p in pos if _finite(seq[name][p])]
        return _fmt(sum(finite) / len(finite)) if finite else "n/a"

    def listing(mark: str, value: str) -> str:
        chosen = sorted((p for p in pos if seq[mark][p]), key=lambda p: (-seq[value][p], p))
        shown = [f'"{_markdown_text(tokens[p])}" (#{p}, {_fmt(seq[value][p], 3)})' for p in chosen[:top]]
        more = f", and {len(chosen) - top} more" if len(chosen) > top else ""
        return ", ".join(shown) + more if shown else "none"

    lines = [
        f"**{_markdown_text(title)}**",
        "",
        f"{len(pos)} response tokens; mean WAAD {mean('waad')}, mean FAI {mean('fai')}; "
        f"layers {', '.join(map(str, trace.layers))}.",
        "",
        f"Anchor tokens, highest FAI first: {listing('anchor', 'fai')}",
        "",
        f"Preplan tokens, largest WAAD jump first: {listing('preplan', 'waad_jumps')}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- files
def write_report(
    out_dir: str | Path,
    trace: RhythmTrace,
    tokens: list[str],
    maps: dict[str, torch.Tensor] | None = None,
    span: tuple[int, int] | None = None,
    index: int = 0,
    title: str = "Rhythm report",
    dpi: int = 90,
    embed_images: bool = True,
) -> dict[str, Path]:
    """Write the report of one sequence into ``out_dir``: ``curves.png``, ``heatmaps.png`` (with ``maps``) and
    ``report.html``.

    Without matplotlib the PNGs are skipped with a warning and only the page is written.

    Args:
        out_dir: folder, created if needed.
        trace: from [`capture_rhythm`][lightning_reasonattn.capture_rhythm].
        tokens: the decoded token of every position (``N`` strings).
        maps: the group maps from [`capture_group_maps`][lightning_reasonattn.capture_group_maps], as in
            [`rhythm_figures`][rhythm_figures] (without them, no heatmaps).
        span: the ``(start, stop)`` the maps were captured over.
        index: the sequence of the batch.
        title: the page's heading.
        dpi: resolution of the PNGs (90 gives about 1000 x 450 pixels per figure).
        embed_images: also embed the PNGs in the page (``data:`` URIs), so the page alone holds everything.

    Returns:
        ``{"curves": path, "heatmaps": path, "html": path}`` for the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images: dict[str, bytes] = {}
    try:
        _matplotlib()
    except ImportError:
        warnings.warn(MISSING_MATPLOTLIB, stacklevel=2)
    else:
        for name, figure in rhythm_figures(trace, tokens, maps, span, index).items():
            images[name] = figure_png(figure, dpi)
            paths[name] = out / f"{name}.png"
            paths[name].write_bytes(images[name])
    page = rhythm_html(trace, tokens, index, title, images if embed_images else None)
    paths["html"] = out / "report.html"
    paths["html"].write_text(page, encoding="utf-8")
    return paths
