"""Rendering of a survey: the table as text and Markdown, the profiles as a PNG, and one self-contained HTML page.

Pure rendering of the ``survey.json`` record (see
[`lightning_reasonattn.survey.run`][lightning_reasonattn.survey.run]); the page has the style of the per-response
rhythm report ([`lightning_reasonattn.report`][lightning_reasonattn.report]), embeds its picture as a ``data:`` URI
and links the per-response reports with relative links. Response text is model output: it is only ever escaped.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from pathlib import Path
from typing import Any

from ..outputs import write_whole
from ..report.escape import one_line
from ..report.figures import figure_png, matplotlib_classes
from ..report.page import PAGE_CSS
from ..report.sequence import FAI_RGB, MISSING_MATPLOTLIB, WAAD_RGB, hex_color
from .table import MIN_PEAKS_TO_RANK

PAPER_SOURCE = "Qwen3-4B-Base on GSM8K (Li et al., arXiv 2510.13554)"

_SURVEY_CSS = """
table.survey{font-size:.88rem;margin:.4rem 0 1rem}
table.survey td,table.survey th{padding:.25rem .6rem}
table.survey td.l,table.survey th.l{text-align:left}
table.survey tr.paper td{font-weight:600}
table.survey td.na{color:#9ca3af}
table.survey td.sub{padding-left:1.6rem;color:#4b5563}
.note{font-size:.85rem;color:#4b5563;max-width:60rem}
ol.resp{font-size:.85rem;padding-left:1.4rem}ol.resp li{margin:.2rem 0}
.preview{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#4b5563;font-size:.8rem}
pre.settings{font-size:.78rem;background:#f9fafb;border:1px solid #e5e7eb;padding:.5rem;overflow-x:auto}
table.knockout{font-size:.8rem}table.knockout td{vertical-align:top}
table.knockout th[colspan]{text-align:center;border-bottom:1px solid #d1d5db}
.ci{color:#6b7280;font-size:.72rem;white-space:nowrap}
"""


def _num(value: float | None, digits: int = 3) -> str:
    """``digits`` decimals, or ``digits`` significant digits for small values (a mean FAI is ~0.003)."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if value == 0 or abs(value) >= 0.1 else f"{value:#.{digits}g}"


def _interval(row: dict[str, Any], digits: int = 3) -> str:
    if row["low"] is None or row["high"] is None:
        return "n/a"
    return f"[{_num(row['low'], digits)}, {_num(row['high'], digits)}]"


def format_survey_table(result: dict[str, Any]) -> str:
    """The table as fixed-width text: statistic, value, interval, the paper's value."""
    level = round(100 * result["settings"]["level"])
    width = max(len(row["label"]) for row in result["table"])
    lines = [f"{'statistic':<{width}}  {'value':>7}  {f'{level}% CI':>16}  {'paper':>6}"]
    for row in result["table"]:
        lines.append(f"{row['label']:<{width}}  {_num(row['value']):>7}  {_interval(row):>16}  {row['paper_text']:>6}")
    if "knockout" in result:
        lines += ["", format_knockout_table(result) if result["knockout"]["groups"] else knockout_empty(result)]
    return "\n".join(lines)


def markdown_table(result: dict[str, Any]) -> str:
    """The table in Markdown (for docs and issues)."""
    level = round(100 * result["settings"]["level"])
    lines = [
        f"| statistic | value | {level}% CI | paper |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in result["table"]:
        label = row["label"].replace("|", "\\|")
        lines.append(f"| {label} | {_num(row['value'])} | {_interval(row)} | {row['paper_text']} |")
    if "knockout" in result:
        lines += ["", *(_knockout_markdown(result) if result["knockout"]["groups"] else [knockout_empty(result)])]
    return "\n".join(lines)


def profiles_figure(result: dict[str, Any]):
    """matplotlib figure: mean WAAD and FAI over relative position in the response, with the bootstrap band.

    Raises:
        ImportError: matplotlib is not installed.
    """
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    profiles = result["profiles"]
    buckets = profiles["buckets"]
    x = [(i + 0.5) / buckets for i in range(buckets)]
    fig = Figure(figsize=(11, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    level = round(100 * result["settings"]["level"])
    for ax, name, rgb, label in (
        (axes[0], "waad", WAAD_RGB, "WAAD (local heads)"),
        (axes[1], "fai", FAI_RGB, "FAI (global heads)"),
    ):
        curve = profiles[name]
        nan = float("nan")
        mean = [nan if v is None else v for v in curve["mean"]]
        low = [nan if v is None else v for v in curve["low"]]
        high = [nan if v is None else v for v in curve["high"]]
        ax.fill_between(x, low, high, color=hex_color(rgb), alpha=0.2, lw=0, label=f"{level}% bootstrap interval")
        ax.plot(x, mean, color=hex_color(rgb), lw=1.6, marker="o", ms=3, label=f"mean {label}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("relative position in the response (0 = first token, 1 = last)")
        ax.set_ylabel(name.upper())
        ax.set_title(f"{label}, {result['responses']} responses", fontsize=10, loc="left")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=8, loc="best", framealpha=0.85)
    return fig


def _layers(result: dict[str, Any]) -> str:
    """``"1, 2 (middle)"``: the layer indices measured, and how they were chosen."""
    chosen = result["settings"]["layers"]
    indices = result.get("layers")
    if indices is None:  # a survey.json written before the indices were recorded
        return str(chosen)
    shown = ", ".join(str(i) for i in indices)
    return f"{shown} ({chosen})" if isinstance(chosen, str) else shown


def _row_html(row: dict[str, Any]) -> str:
    cls = ' class="paper"' if row["key"] == "fai_preceded_rate" else ""
    label = row["label"]
    label_cls = "l sub" if label.startswith("... ") else "l"
    label = label.removeprefix("... ")
    paper = row["paper_text"]
    return (
        f'<tr{cls} title="{html.escape(row["formula"], quote=True)}">'
        f'<td class="{label_cls}">{html.escape(label)}</td><td>{_num(row["value"])}</td><td>{_interval(row)}</td>'
        f"<td{' class=na' if paper == '-' else ''}>{html.escape(paper)}</td></tr>"
    )


def empty_reason(result: dict[str, Any], section: str) -> str:
    """Why the list ``section`` (``"most"`` or ``"least"`` coupled) of a survey is empty: the page says it."""
    if result["settings"].get("reports", 1) == 0:
        return (
            "Per-response reports were turned off (--reports 0). Rerun with --reports N and the same --out to write "
            "them: the measured batches are reused."
        )
    ranked = sum(r.get("lift") is not None for r in result.get("per_response", []))
    if ranked == 0:
        return (
            f"No response has {MIN_PEAKS_TO_RANK} FAI peaks or more (of {result['responses']} responses), so none is "
            "ranked: longer responses (--max-new-tokens) or more prompts (--n) give more peaks."
        )
    if section == "least":
        return f"Every ranked response ({ranked}) is listed above: a response is listed once."
    return ""


def _response_list(items: list[dict[str, Any]], reason: str = "") -> str:
    if not items:
        return f'<p class="note">{html.escape(reason)}</p>'
    out = ['<ol class="resp">']
    for item in items:
        link = f'<a href="{html.escape(item["report"], quote=True)}">report</a>' if item.get("report") else "no report"
        preview = html.escape(one_line(item["preview"]))
        out.append(
            f"<li>response {item['index']} (prompt {item['prompt_index']}): lift {_num(item['lift'], 2)}, "
            f"{item['fai_peaks']} FAI peaks, {item['tokens']} tokens, {link}"
            f'<br><span class="preview">{preview}</span></li>'
        )
    out.append("</ol>")
    return "\n".join(out)


def survey_html(result: dict[str, Any], images: dict[str, bytes] | None = None) -> str:
    """The survey as one self-contained HTML page (inline CSS, embedded PNG, no script, no network).

    Args:
        result: the ``survey.json`` record.
        images: ``{name: PNG bytes}`` to embed (the profiles).
    """
    s, run = result["settings"], result["run"]
    level = round(100 * s["level"])
    title = f"Rhythm survey of {result['model']}"
    facts = (
        f"{result['responses']} responses ({result['response_tokens']} tokens, {result['truncated']} cut at "
        f"{s['max_new_tokens']} tokens) to the prompts {s['prompts']!r}, sampled at temperature {s['temperature']} "
        f"(top-p {s['top_p']}, top-k {s['top_k'] or 'off'}); peaks: local maxima among the top "
        f"{s['peak_fraction']:.0%} of a signal; coupling window {s['coupling_window']} tokens; "
        f"layers {_layers(result)}. "
        f"{run['date']}, {run['machine']}; "
        f"{run['measured_responses']} responses measured in this run at "
        f"{_num(run['responses_per_s'], 2)} responses/s."
    )
    note = (
        "The paper's 52.5% vs 36.9% is the bold row: the share of FAI peaks that have a WAAD peak at the same "
        f"token or within the {s['coupling_window']} tokens before. The shuffled value places each response's peaks at "
        "random positions (exact expectation); lift = rate / shuffled, above 1 when the peaks meet more often than "
        f"chance. Intervals: {level}% percentile bootstrap over responses ({s['n_boot']} resamples); every value is "
        "a ratio of sums over responses. Hover a row for its formula."
    )
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{PAGE_CSS}{_SURVEY_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="summary">{html.escape(facts)}</p>',
        "<h2>Coupling statistics</h2>",
        '<table class="survey">',
        f'<tr><th class="l">statistic</th><th>value</th><th>{level}% CI</th>'
        f'<th title="{html.escape(PAPER_SOURCE, quote=True)}">paper (Qwen3-4B-Base)</th></tr>',
        *(_row_html(row) for row in result["table"]),
        "</table>",
        f'<p class="note">{html.escape(note)} Paper: {html.escape(PAPER_SOURCE)}.</p>',
        "<h2>Profiles over the response</h2>",
    ]
    for name, png in (images or {}).items():
        if name == "knockout":  # (in its own section)
            continue
        data = base64.b64encode(png).decode("ascii")
        out.append(f'<img alt="{html.escape(name, quote=True)}" src="data:image/png;base64,{data}">')
    if not images:
        reason = html.escape(MISSING_MATPLOTLIB.split(", so")[0])
        fix = "pip install 'lightning-reasonattn[report]' and rerun with the same --out"
        out.append(f'<p class="note">No picture: {reason}; install it with {fix}.</p>')
    if result.get("knockout", {}).get("groups"):
        out += _knockout_html(result, (images or {}).get("knockout"))
    elif "knockout" in result:
        out += ["<h2>Are anchors causal? Knockout</h2>", f'<p class="note">{html.escape(knockout_empty(result))}</p>']
    out += [
        "<h2>Most coupled responses</h2>",
        _response_list(result["coupled"]["most"], empty_reason(result, "most")),
        "<h2>Least coupled responses</h2>",
        _response_list(result["coupled"]["least"], empty_reason(result, "least")),
        f'<p class="note">Ranked by their own lift in the paper\'s direction, among responses with at least '
        f"{MIN_PEAKS_TO_RANK} FAI peaks.</p>",
        "<details><summary>Settings</summary>",
        f'<pre class="settings">{html.escape(json.dumps(s, indent=1))}</pre></details>',
        "</body></html>",
    ]
    return "\n".join(out)


def write_survey_files(out_dir: str | Path, result: dict[str, Any], dpi: int = 90) -> dict[str, Path]:
    """Write ``survey.json``, ``table.md``, ``profiles.png`` and, with a knockout, ``knockout.png`` (with matplotlib)
    and ``index.html`` into ``out_dir``.

    Returns:
        ``{"json": path, "table": path, "profiles": path, "knockout": path, "html": path}`` for the files written.
    """
    out = Path(out_dir)
    paths = {"json": out / "survey.json", "table": out / "table.md"}
    write_whole(paths["json"], json.dumps(result, indent=1, allow_nan=False))
    write_whole(paths["table"], markdown_table(result) + "\n")
    images = {}
    try:
        figure = profiles_figure(result)
    except ImportError:
        warnings.warn(MISSING_MATPLOTLIB, stacklevel=2)
    else:
        images["profiles"] = figure_png(figure, dpi)
        paths["profiles"] = out / "profiles.png"
        write_whole(paths["profiles"], images["profiles"])
        if result.get("knockout", {}).get("groups"):
            images["knockout"] = figure_png(knockout_figure(result), dpi)
            paths["knockout"] = out / "knockout.png"
            write_whole(paths["knockout"], images["knockout"])
    paths["html"] = out / "index.html"
    write_whole(paths["html"], survey_html(result, images))
    return paths


# ------------------------------------------------------------------------------------------- the knockout
KNOCKOUT_WINDOWS = {"after": "rest of the response", "answer": "final answer"}
KNOCKOUT_STATS = {"mean": "NLL increase", "vs_random": "/ random", "anchors_vs": "anchors /"}


def _stat(stat: dict[str, Any]) -> tuple[str, str]:
    return _num(stat["value"]), _interval(stat)


def format_knockout_table(result: dict[str, Any]) -> str:
    """The knockout table as fixed-width text: per group and window (the rest of the response, the final answer) the
    mean NLL increase, its ratio to random, the anchors' ratio to it, each with its interval.

    Args:
        result: a ``survey.json`` record with a ``knockout`` (or any ``{"settings": {"level"}, "knockout": ...}``).
    """
    level = round(100 * result["settings"]["level"])
    groups = result["knockout"]["groups"]
    width = max(len(g["label"]) for g in groups)
    lines = [f"Knockout: mean NLL increase (nats/token) with {level}% CI"]
    for window, title in KNOCKOUT_WINDOWS.items():
        lines.append(f"{title:<{width}}  " + "  ".join(f"{name:>28}" for name in KNOCKOUT_STATS.values()))
        for g in groups:
            cells = (" ".join(_stat(g[window][key])) for key in KNOCKOUT_STATS)
            lines.append(f"{g['label']:<{width}}  " + "  ".join(f"{cell:>28}" for cell in cells))
    return "\n".join(lines)


def knockout_empty(result: dict[str, Any]) -> str:
    """Why a knockout has no table: no response had enough tokens with an FAI, and the fix."""
    knockout = result["knockout"]
    need = 2 * knockout["settings"]["count"]
    return (
        f"Knockout: none of the {knockout['skipped']} responses has {need} tokens with an FAI (an anchor group and a "
        "control of --knockout-count tokens each), so nothing was knocked out: longer responses (--max-new-tokens), "
        "a shorter FAI horizon or a smaller --knockout-count give some."
    )


def _knockout_markdown(result: dict[str, Any]) -> list[str]:
    level = round(100 * result["settings"]["level"])
    head = " | ".join(f"{name} ({title})" for title in KNOCKOUT_WINDOWS.values() for name in KNOCKOUT_STATS.values())
    lines = [
        f"Knockout: mean NLL increase in nats per token, with {level}% paired bootstrap intervals over responses.",
        "",
        f"| group | {head} |",
        "| --- |" + " ---: |" * (len(KNOCKOUT_WINDOWS) * len(KNOCKOUT_STATS)),
    ]
    for g in result["knockout"]["groups"]:
        cells = (" ".join(_stat(g[w][key])) for w in KNOCKOUT_WINDOWS for key in KNOCKOUT_STATS)
        lines.append(f"| {g['label']} | " + " | ".join(cells) + " |")
    return lines


def knockout_figure(result: dict[str, Any]):
    """matplotlib figure: each group's mean NLL increase with its bootstrap interval, for the rest of the response
    and for the final answer.

    Raises:
        ImportError: matplotlib is not installed.
    """
    Figure, FigureCanvasAgg, _ = matplotlib_classes()
    knockout = result["knockout"]
    groups = knockout["groups"]
    fig = Figure(figsize=(11, 0.4 * len(groups) + 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    level = round(100 * result["settings"]["level"])
    y = list(range(len(groups)))[::-1]
    for ax, (window, title) in zip(axes, KNOCKOUT_WINDOWS.items(), strict=True):
        nan = float("nan")
        stats = [g[window]["mean"] for g in groups]
        value = [nan if s["value"] is None else s["value"] for s in stats]
        low = [0.0 if s["low"] is None or v != v else v - s["low"] for s, v in zip(stats, value, strict=True)]
        high = [0.0 if s["high"] is None or v != v else s["high"] - v for s, v in zip(stats, value, strict=True)]
        colors = [hex_color(FAI_RGB) if g["key"].startswith("anchors") else "#9ca3af" for g in groups]
        ax.barh(y, value, xerr=[low, high], color=colors, alpha=0.85, capsize=3, error_kw={"lw": 1})
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_xlabel("mean NLL increase (nats per token)")
        ax.grid(alpha=0.25, axis="x")
    axes[0].set_yticks(y, [g["label"] for g in groups], fontsize=9)
    fig.suptitle(
        f"Knocking {knockout['settings']['count']} tokens of each group out of the attention, "
        f"{knockout['responses']} responses; bars: {level}% bootstrap intervals",
        fontsize=10,
    )
    return fig


def _knockout_html(result: dict[str, Any], png: bytes | None) -> list[str]:
    knockout = result["knockout"]
    level = round(100 * result["settings"]["level"])
    count = knockout["settings"]["count"]
    head = "".join(f'<th colspan="{len(KNOCKOUT_STATS)}">{title}</th>' for title in KNOCKOUT_WINDOWS.values())
    names = "".join(f"<th>{html.escape(name)}</th>" for name in KNOCKOUT_STATS.values()) * len(KNOCKOUT_WINDOWS)
    rows = []
    for g in knockout["groups"]:
        cells = []
        for window in KNOCKOUT_WINDOWS:
            for key in KNOCKOUT_STATS:
                value, interval = _stat(g[window][key])
                cells.append(f'<td>{value}<br><span class="ci">{interval}</span></td>')
        cls = ' class="paper"' if g["key"] == "anchors" else ""
        rows.append(f'<tr{cls}><td class="l">{html.escape(g["label"])}</td>{"".join(cells)}</tr>')
    note = (
        f"For each response, {count} tokens of each group are hidden from every later token (no later query attends "
        "to them, in every head of every layer; the last two groups: in the response's global heads only), one "
        "forward with every group as a row. NLL increase: the mean, over the response tokens predicted from a row "
        "after the first hidden token (the hidden tokens left out), of the knocked-out NLL minus the plain NLL, in "
        "nats per token; the final answer: the same over the answer's tokens. '/ random': the increase over that of "
        "random tokens hidden in the same heads; 'anchors /': the anchors' increase over this group's. Every value "
        f"is a ratio of sums over responses; intervals: {level}% percentile bootstrap over responses, the same "
        f"resample for every group (paired). {knockout['responses']} responses measured, {knockout['skipped']} "
        f"skipped (too few tokens with an FAI), {knockout['answer_responses']} with a final answer; "
        f"{knockout['unmatched_kind']} anchors had no untaken token of their kind."
    )
    out = [
        "<h2>Are anchors causal? Knockout</h2>",
        '<table class="survey knockout">',
        f'<tr><th class="l" rowspan="2">group</th>{head}</tr>',
        f"<tr>{names}</tr>",
        *rows,
        "</table>",
        f'<p class="note">{html.escape(note)} Definitions: docs/knockout.md (Are anchors causal?).</p>',
    ]
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        out.append(f'<img alt="knockout" src="data:image/png;base64,{data}">')
    return out
