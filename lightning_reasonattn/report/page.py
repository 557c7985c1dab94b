"""The token-level page of one sequence (HTML) and its short Markdown summary.

[`rhythm_html`][rhythm_html]: one self-contained page (inline CSS and SVG, no script, no network): the response tokens
coloured by WAAD or FAI (a toggle), preplan and anchor tokens marked, the numbers on hover. Needs nothing.
[`rhythm_markdown`][rhythm_markdown]: a few lines for TensorBoard's text panel.

Token text is model output, hence untrusted: it is only ever HTML-escaped (or Markdown-escaped) and shown, never
interpreted.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from ..functional.trace import RhythmTrace
from .escape import escape_char, one_line
from .sequence import ANCHOR_COLOR, FAI_RGB, PREPLAN_COLOR, WAAD_RGB, hex_color, is_finite, sequence_data

PAGE_CSS = """
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
            out.append(f'<span class="ctl">{escape_char(ch)}</span>')
        else:
            out.append(html.escape(ch, quote=True))
    return "".join(out)


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if is_finite(value) else "n/a"


def _marks(seq: dict[str, Any], p: int) -> list[str]:
    return [name for name in ("preplan", "anchor", "dominated", "intro") if seq[name][p]]


def _scale(values: list[float]) -> float:
    finite = [v for v in values if is_finite(v)]
    top = max(finite, default=0.0)
    return top if top > 0 else 1.0


def _range(values: list[float]) -> tuple[float, float]:
    """``(lowest, highest)`` finite value: the colour scale of the token page."""
    finite = [v for v in values if is_finite(v)]
    return (min(finite), max(finite)) if finite else (0.0, 1.0)


def _rgba(rgb: tuple[int, int, int], value: float, scale: tuple[float, float]) -> str:
    """Colour of a token: from nearly transparent at the lowest value of the response to strong at the highest."""
    if not is_finite(value):
        return "transparent"
    lo, hi = scale
    share = (value - lo) / (hi - lo) if hi > lo else 1.0
    alpha = 0.05 + 0.8 * min(1.0, max(0.0, share))
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.3f})"


def _token_span(seq: dict[str, Any], tokens: list[str], p: int, scales: tuple) -> str:
    w, f, d = seq["waad"][p], seq["fai"][p], seq["waad_jumps"][p]
    marks = _marks(seq, p)
    tip = f"#{p} {one_line(tokens[p])!r}  WAAD {_fmt(w)}  jump {_fmt(d)}  FAI {_fmt(f)}"
    if marks:
        tip += "  [" + ", ".join(marks) + "]"
    classes = " ".join(["tok", *marks, *(["nan"] if not is_finite(w) and not is_finite(f) else [])])
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
        if is_finite(y):
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
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{hex_color(rgb)}" stroke-width="1.4"/>')
    for p in pos:
        v = seq[name][p]
        if seq[mark][p] and is_finite(v):
            tip = html.escape(f"#{p} {one_line(tokens[p])!r}  {label} {_fmt(v)}  [{mark}]", quote=True)
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
    seq = sequence_data(trace, index, tokens)
    pos = seq["response"]
    response = set(pos)
    scales = (_range([seq["waad"][p] for p in pos]), _range([seq["fai"][p] for p in pos]))
    first = pos[0] if pos else seq["n"]
    prompt = "".join(_visible(tokens[p]) for p in range(first) if p not in response)
    body = "".join(_token_span(seq, tokens, p, scales) for p in pos)
    counts = {name: sum(bool(seq[name][p]) for p in pos) for name in ("preplan", "anchor", "dominated", "intro")}

    def mean(name: str) -> str:
        finite = [seq[name][p] for p in pos if is_finite(seq[name][p])]
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
        f"<style>{PAGE_CSS}</style></head><body>",
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
        _curve_svg(seq, tokens, "waad", rgb=WAAD_RGB, mark="preplan", color=PREPLAN_COLOR),
        _curve_svg(seq, tokens, "fai", rgb=FAI_RGB, mark="anchor", color=ANCHOR_COLOR),
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
            f"<tr><td>{p}</td><td class=t>{html.escape(one_line(tokens[p]))}</td><td>{_fmt(seq['waad'][p])}</td>"
            f"<td>{_fmt(seq['waad_jumps'][p])}</td><td>{_fmt(seq['fai'][p])}</td>"
            f"<td>{' '.join(_marks(seq, p))}</td></tr>"
        )
    out.append("</table></details></body></html>")
    return "\n".join(out)


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|~")


def _markdown_text(text: str) -> str:
    """A token as inert Markdown: one line, HTML characters as entities, Markdown ones backslash-escaped."""
    out = []
    for ch in one_line(text):
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
    seq = sequence_data(trace, index, tokens)
    pos = seq["response"]

    def mean(name: str) -> str:
        finite = [seq[name][p] for p in pos if is_finite(seq[name][p])]
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
