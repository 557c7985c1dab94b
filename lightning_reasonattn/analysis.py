"""The rhythm of one prompt's response, token by token: what ``reasonattn analyze`` generates, measures and prints.

[`generate`][generate] answers a prompt; [`token_rows`][token_rows] and [`summarize`][summarize] turn a
[`RhythmTrace`][lightning_reasonattn.RhythmTrace] into per-token rows and a summary; [`format_table`][format_table]
and [`format_summary`][format_summary] print them; [`write_analysis_report`][write_analysis_report] writes the
pictures and the page. Model output is untrusted: it is shown escaped ([`escape_token`][escape_token], and
[`printable`][lightning_reasonattn.report.escape.printable] of the report's one escaper), never interpreted.
"""

from __future__ import annotations

import math

import torch

from .capture import capture_group_maps
from .report import default_span, write_report
from .report.escape import escape, shorten
from .rollout.prompts import end_ids, pad_id
from .rollout.sampling import sample as sample_completions

DEFAULT_PROMPT = (
    "A train leaves a station at 2:00 pm at 60 km per hour. A second train leaves the same station at "
    "3:00 pm on the same track at 90 km per hour. At what time does the second train catch up with the "
    "first? Think step by step."
)


MARKS = (("preplan", "P"), ("anchor", "A"), ("dominated", "D"), ("intro", "I"))


TOKEN_WIDTH = 16


def prompt_ids(tokenizer, prompt: str) -> torch.Tensor:
    """``[1, P]`` token ids of ``prompt``, wrapped in the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    return tokenizer(prompt, return_tensors="pt").input_ids


def generate(model, tokenizer, prompt: str, *, max_new_tokens: int, sample: bool = False, seed: int = 0):
    """Generate a response, up to and including its first end id
    ([`end_ids`][lightning_reasonattn.rollout.prompts.end_ids]); return ``(input_ids [1, N], response_mask [1, N])``
    for prompt + response.

    Greedy by default; ``sample`` draws from the full distribution at temperature 1, as RL rollouts do (no top-k /
    top-p cut), from ``seed`` (the caller's RNG state is left as it was).
    """
    ids = prompt_ids(tokenizer, prompt).to(next(model.parameters()).device)
    found = sample_completions(
        model,
        ids,
        torch.ones_like(ids),
        eos_ids=end_ids(model, tokenizer),
        pad_id=pad_id(model, tokenizer),
        max_new_tokens=max_new_tokens,
        temperature=1.0 if sample else 0.0,
        seed=seed,
    )
    width = int(found.mask[0].sum())  # the response, through its end id; no padding after it
    out = torch.cat([ids, found.ids[:, :width]], 1)
    response_mask = torch.zeros_like(out, dtype=torch.bool)
    response_mask[:, ids.shape[1] :] = True
    return out, response_mask


def escape_token(text: str, width: int = TOKEN_WIDTH) -> str:
    """One-line, printable form of a token for the terminal table: control characters escaped, a backslash doubled
    (a typed ``\\n`` and a newline differ), cut to ``width`` characters."""
    return shorten(escape(text, backslash=True), width)


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


def token_rows(trace, tokenizer, input_ids: torch.Tensor) -> list[dict]:
    """Per-token data of the response of sequence 0: position, id, text, WAAD, delta, FAI and the four marks."""
    ids = input_ids[0].tolist()
    rows = []
    for pos in trace.response_mask[0].nonzero().flatten().tolist():
        row = {"position": pos, "token_id": ids[pos], "text": tokenizer.decode([ids[pos]])}
        for key, field in (("waad", "waad"), ("delta", "waad_jumps"), ("fai", "fai")):
            row[key] = _num(float(getattr(trace, field)[0, pos]))
        for name, _ in MARKS:
            row[name] = bool(getattr(trace, name)[0, pos])
        rows.append(row)
    return rows


def _heads(trace, which: str) -> list[str]:
    n_heads = trace.head_distance.shape[-1]
    return [f"L{trace.layers[i // n_heads]}h{i % n_heads}" for i in getattr(trace, which)[0].tolist()]


def summarize(trace, rows: list[dict]) -> dict:
    """Summary of one analysed response: means over the response, token sets, head groups."""

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return sum(values) / len(values) if values else None

    def tokens(mark: str) -> list[dict]:
        return [{"position": r["position"], "text": r["text"]} for r in rows if r[mark]]

    return {
        "layers": list(trace.layers),
        "response_tokens": len(rows),
        "mean_waad": mean("waad"),
        "mean_fai": mean("fai"),
        **{name: tokens(name) for name, _ in MARKS},
        "local_heads": _heads(trace, "local_heads"),
        "global_heads": _heads(trace, "global_heads"),
    }


def format_table(rows: list[dict]) -> str:
    """The per-token table as text."""

    def num(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"{'pos':>5}  {'token':<{TOKEN_WIDTH}}  {'WAAD':>7}  {'delta':>7}  {'FAI':>7}  marks"]
    for r in rows:
        marks = "".join(letter if r[name] else "." for name, letter in MARKS)
        lines.append(
            f"{r['position']:>5}  {escape_token(r['text']):<{TOKEN_WIDTH}}  {num(r['waad'], 3):>7}  "
            f"{num(r['delta'], 3):>7}  {num(r['fai'], 4):>7}  {marks}"
        )
    lines.append("marks: P preplan, A anchor, D locally dominated anchor, I introductory token")
    return "\n".join(lines)


def format_summary(model_name: str, summary: dict) -> str:
    """The summary block as text."""

    def listing(items: list[str], width: int = 100) -> str:
        lines, line = [], ""
        for item in items:  # wrap between items only, never inside a token
            if line and len(line) + len(item) + 2 > width:
                lines.append(line + ",")
                line = ""
            line = f"{line}, {item}" if line else item
        return "\n".join("  " + text for text in [*lines, line])

    def mean(value: float | None, digits: int) -> str:
        return "n/a (response too short)" if value is None else f"{value:.{digits}f}"

    lines = [
        f"model: {model_name}",
        f"layers: {', '.join(map(str, summary['layers']))}",
        f"response tokens: {summary['response_tokens']}",
        f"mean WAAD: {mean(summary['mean_waad'], 3)}",
        f"mean FAI: {mean(summary['mean_fai'], 4)}",
    ]
    for name, label in (("preplan", "preplan tokens"), ("anchor", "anchor tokens")):
        found = summary[name]
        lines.append(f"{label}: {len(found)}")
        if found:
            lines.append(listing([f"{t['position']}:'{escape_token(t['text'])}'" for t in found]))
    lines.append(f"dominated anchors: {len(summary['dominated'])}, introductory tokens: {len(summary['intro'])}")
    for key, label in (("local_heads", "local heads"), ("global_heads", "global heads")):
        lines.append(f"{label}: {len(summary[key])}")
        lines.append(listing(summary[key]))
    return "\n".join(lines)


def write_analysis_report(model, tokenizer, input_ids: torch.Tensor, trace, *, out_dir: str, title: str) -> dict:
    """Heatmaps of a window at the start of the response, curves and the HTML page, into ``out_dir``."""
    span = default_span(trace)
    device = next(model.parameters()).device
    maps = capture_group_maps(model, input_ids.to(device), trace.to(device), span=span)
    maps = {name: value.cpu() for name, value in maps.items()}
    tokens = [tokenizer.decode([i]) for i in input_ids[0].tolist()]
    return write_report(out_dir, trace, tokens, maps, span, title=f"Rhythm of {title}")
