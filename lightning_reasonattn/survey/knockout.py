"""``reasonattn survey --knockout``: are anchors causal? Hide them from the rest of the response and measure the loss.

For every response of a survey, a few tokens of each group (anchors, and controls of the same count from the same
response: random, position-matched, same-kind, highest-entropy and preplan tokens; see
[`choose_groups`][lightning_reasonattn.functional.choose_groups]) are knocked out of the
attention ([`knockout_nll`][lightning_reasonattn.capture.knockout.knockout_nll]): no later token may attend to them, in
every head of every layer, or (the ``*_global`` groups) in the response's global heads only, the channel FAI is
defined on. All groups and the plain forward run as the rows of one batch, one forward per response.

Per group the survey reports the mean increase of NLL over the tokens the knockout can reach (the rest of the
response, and its final answer where the task defines one), its ratio to the random group and the anchors' ratio to
it; every value is a ratio of sums over responses, with a percentile bootstrap interval that resamples the responses
(the same resample for every group: the comparison is paired). Definitions: docs/knockout.md, "Are anchors causal?".

Resumable like the survey: each batch's results are written to ``OUT/knockout/NNNNN.json``, reused while the
responses and the knockout's settings are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..capture import capture_rhythm, knockout_nll
from ..functional._checks import check_number
from ..functional.bootstrap import bootstrap_ci
from ..functional.knockout import choose_groups, knockout_sums, token_kind
from .settings import MAX_COUNT, SurveySettings
from .table import _number

VERSION = 1  # of the groups' and sums' definitions: a folder measured under another is measured again


@dataclass(frozen=True)
class Group:
    """One row of the knockout table.

    Attributes:
        key: name in ``survey.json``.
        label: what a reader sees.
        tokens: which chosen tokens it knocks out (a key of
            [`choose_groups`][lightning_reasonattn.functional.knockout.choose_groups]).
        heads: ``"all"`` (every head of every layer) or ``"global"`` (the response's global heads).
    """

    key: str
    label: str
    tokens: str
    heads: str = "all"

    @property
    def random(self) -> str:
        """The random group knocked out in the same heads: the denominator of the ratio to random."""
        return "random" if self.heads == "all" else "random_global"

    @property
    def anchors(self) -> str:
        """The anchor group knocked out in the same heads."""
        return "anchors" if self.heads == "all" else "anchors_global"


GROUPS: tuple[Group, ...] = (
    Group("anchors", "Anchor tokens (top FAI peaks)", "anchors"),
    Group("random", "Random tokens", "random"),
    Group("position", "Position-matched tokens (nearest non-anchor)", "position"),
    Group("same_kind", "Tokens of the anchors' kinds", "same_kind"),
    Group("entropy", "Highest-entropy tokens", "entropy"),
    Group("preplan", "Preplan tokens (top WAAD-jump peaks)", "preplan"),
    Group("anchors_global", "Anchor tokens, global heads only", "anchors", "global"),
    Group("random_global", "Random tokens, global heads only", "random", "global"),
)
"""The knockout groups, in the table's order."""

WINDOWS = ("after", "answer")
"""The tokens a group's increase is averaged over: the rest of the response, its final answer."""


@dataclass(frozen=True, kw_only=True)
class KnockoutSettings:
    """The knockout test's knobs (the survey's own ``peak_fraction`` picks the peaks, its ``seed`` the random draws).

    Attributes:
        count: tokens knocked out per group and response (the anchors: the ``count`` FAI peaks of highest FAI).
    """

    count: int = 4

    def __post_init__(self):
        check_number("count", self.count, low=1, high=MAX_COUNT, integer=True, fix=" (tokens per group; default 4)")

    def fingerprint(self, survey: SurveySettings) -> str:
        """A short hash of what decides the knockout's numbers: these settings, the survey's peaks and seed."""
        text = json.dumps(
            {"version": VERSION, **asdict(self), "peak_fraction": survey.peak_fraction, "seed": survey.seed}
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- tokens and answers
def token_texts(decode: Callable[[list[int]], str], ids: list[int]) -> list[str]:
    """The text each token adds to the decoded response (``decode(ids[:i + 1])`` past ``decode(ids[:i])``; a token
    that rewrites the text before it, such as half a UTF-8 character, is decoded alone)."""
    texts, before = [], ""
    for i in range(len(ids)):
        text = decode(ids[: i + 1])
        texts.append(text[len(before) :] if text.startswith(before) else decode(ids[i : i + 1]))
        before = text
    return texts


_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.S)
_NUMBER = re.compile(r"-?[0-9]+(?:[.,][0-9]+)*")


def final_answer_span(text: str) -> tuple[int, int] | None:
    """Characters ``[start, end)`` of a response's final answer: the content of its last complete
    ``<answer>...</answer>`` block (whitespace trimmed), else its last number; ``None`` when it has neither."""
    blocks = list(_ANSWER_BLOCK.finditer(text))
    if blocks:
        start, end = blocks[-1].span(1)
        inner = text[start:end]
        start += len(inner) - len(inner.lstrip())
        end -= len(inner) - len(inner.rstrip())
        return (start, end) if end > start else None
    numbers = list(_NUMBER.finditer(text))
    return numbers[-1].span() if numbers else None


def answer_tokens(texts: list[str], span: tuple[int, int] | None) -> torch.Tensor:
    """``[n]`` bool: the tokens whose text overlaps the characters ``span`` of the joined ``texts``."""
    mask = torch.zeros(len(texts), dtype=torch.bool)
    if span is None:
        return mask
    start = 0
    for i, text in enumerate(texts):
        end = start + len(text)
        mask[i] = start < span[1] and end > span[0]
        start = end
    return mask


# ------------------------------------------------------------------------------------------- one response
def _signal(values: list) -> torch.Tensor:
    return torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float32)


def heads_rows(global_heads: list[int], layers: list[int], num_layers: int, num_heads: int) -> torch.Tensor:
    """``[G + 1, num_layers, num_heads]`` bool for [`knockout_nll`][lightning_reasonattn.capture.knockout.knockout_nll]
    over every layer: every head for the plain row and the ``"all"`` groups; for the ``"global"`` groups the global
    heads only (flat ``slot * H + h`` over the measured ``layers``, as in a
    [`RhythmTrace`][lightning_reasonattn.RhythmTrace])."""
    rows = torch.ones(len(GROUPS) + 1, num_layers, num_heads, dtype=torch.bool)
    chosen = torch.zeros(num_layers, num_heads, dtype=torch.bool)
    for flat in global_heads:
        chosen[layers[flat // num_heads], flat % num_heads] = True
    for row, group in enumerate(GROUPS, 1):
        if group.heads == "global":
            rows[row] = chosen
    return rows


def measure_response(
    model,
    prompt_ids: list[int],
    response_ids: list[int],
    groups: dict[str, list[int]],
    answer: torch.Tensor | None,
    heads: torch.Tensor,
    **route,
) -> dict[str, dict[str, Any]]:
    """Knock every group out of one response, in one forward (the plain row first), and sum the NLL increases.

    Args:
        model: the causal LM.
        prompt_ids: the prompt's token ids (unpadded).
        response_ids: the response's token ids.
        groups: positions within the response (from ``choose_groups``).
        answer: ``[n]`` bool, the final-answer tokens, or ``None``.
        heads: from [`heads_rows`][heads_rows].
        route: ``attention_modules`` / ``forward`` for a model that is not a transformers one.

    Returns:
        ``{group key: {"positions", "after_sum", "after_count", "answer_sum", "answer_count"}}``.
    """
    device = next(model.parameters()).device
    p = len(prompt_ids)
    ids = torch.tensor([prompt_ids + response_ids], device=device).repeat(len(GROUPS) + 1, 1)
    positions = [[]] + [[p + s for s in groups[group.tokens]] for group in GROUPS]
    nll = knockout_nll(model, ids, positions, layers="all", heads=heads.to(device), **route)
    increase = (nll[1:, p:] - nll[:1, p:]).double().cpu()
    return {
        group.key: {"positions": groups[group.tokens], **knockout_sums(increase[row], groups[group.tokens], answer)}
        for row, group in enumerate(GROUPS)
    }


# ------------------------------------------------------------------------------------------- a survey's response
def _global_heads(model, record: dict[str, Any], settings: SurveySettings) -> list[int]:
    """The response's global heads: stored by the survey, or (a folder measured before they were) captured alone."""
    if "global_heads" in record:
        return record["global_heads"]
    device = next(model.parameters()).device
    ids = torch.tensor([record["prompt_ids"] + record["response_ids"]], device=device)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, len(record["prompt_ids"]) :] = True
    return capture_rhythm(model, ids, response_mask=mask, **settings.capture_kwargs()).global_heads[0].tolist()


def knock_out(
    model,
    tokenizer,
    record: dict[str, Any],
    settings: SurveySettings,
    knockout: KnockoutSettings,
    *,
    layers: list[int],
    answers: bool,
    generator: torch.Generator,
) -> dict[str, Any]:
    """The knockout record of one survey response (as ``measure_batch`` stored it): its groups' sums, or why it was
    skipped.

    Args:
        layers: the layer indices the survey measured (where the global heads are).
        answers: whether the prompts' task defines a final answer (the built-in sets do).
        generator: the seeded source of the response's random draws.
    """
    texts = token_texts(tokenizer.decode, record["response_ids"])
    out: dict[str, Any] = {"prompt_index": record["prompt_index"], "skipped": None}
    chosen = choose_groups(
        _signal(record["fai"]),
        _signal(record["waad"]),
        _signal(record["entropy"]),
        [token_kind(t) for t in texts],
        knockout.count,
        peak_fraction=settings.peak_fraction,
        generator=generator,
    )
    if chosen is None:
        return {**out, "skipped": f"fewer than {2 * knockout.count} tokens with a defined FAI"}
    groups, unmatched = chosen
    answer = answer_tokens(texts, final_answer_span("".join(texts))) if answers else None
    config = model.config.get_text_config()
    heads = heads_rows(
        _global_heads(model, record, settings), layers, config.num_hidden_layers, config.num_attention_heads
    )
    measured = measure_response(model, record["prompt_ids"], record["response_ids"], groups, answer, heads)
    answer_count = 0 if answer is None else int(answer.sum())
    return {**out, "unmatched_kind": unmatched, "answer_tokens": answer_count, "groups": measured}


# ------------------------------------------------------------------------------------------- the statistics
def knockout_columns(records: list[dict[str, Any]]) -> torch.Tensor:
    """``[R, 4 G]`` float64: each measured response's ``after_sum, after_count, answer_sum, answer_count`` per group
    (in [`GROUPS`][GROUPS] order); skipped responses left out."""
    rows = [
        [r["groups"][g.key][f"{w}_{part}"] for g in GROUPS for w in WINDOWS for part in ("sum", "count")]
        for r in records
        if r.get("skipped") is None
    ]
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 4 * len(GROUPS))


def _statistics(sums: torch.Tensor) -> torch.Tensor:
    """Column sums ``[..., 4 G]`` -> ``[..., G, 2 windows, 3]``: mean increase, ratio to random, anchors / group."""
    parts = sums.unflatten(-1, (len(GROUPS), len(WINDOWS), 2))
    mean = parts[..., 0] / parts[..., 1]  # [..., G, 2]
    index = {g.key: i for i, g in enumerate(GROUPS)}
    random = mean[..., [index[g.random] for g in GROUPS], :]
    anchors = mean[..., [index[g.anchors] for g in GROUPS], :]
    return torch.stack([mean, mean / random, anchors / mean], -1)


def summarize_knockout(records: list[dict[str, Any]], *, n_boot: int, level: float, seed: int) -> dict[str, Any]:
    """Pool the knockout records: per group and window the mean NLL increase, its ratio to random and the anchors'
    ratio to it, each with a paired percentile bootstrap interval over responses.

    Returns:
        ``{"groups": [...], "responses", "skipped", "answer_responses", "unmatched_kind"}``; each group holds
        ``key``, ``label``, ``heads``, ``overlap`` (share of its tokens that are anchors) and per window
        (``after``, ``answer``) ``mean``, ``vs_random``, ``anchors_vs`` (each ``value``, ``low``, ``high``) and
        ``tokens`` (the tokens averaged over).
    """
    used = [r for r in records if r.get("skipped") is None]
    summary: dict[str, Any] = {
        "responses": len(used),
        "skipped": len(records) - len(used),
        "answer_responses": sum(r["answer_tokens"] > 0 for r in used),
        "unmatched_kind": sum(r["unmatched_kind"] for r in used),
        "groups": [],
    }
    if not used:
        return summary
    values = knockout_columns(records)
    point, low, high = bootstrap_ci(values, _statistics, n_boot, level, seed)
    totals = values.sum(0).unflatten(-1, (len(GROUPS), len(WINDOWS), 2))
    for i, group in enumerate(GROUPS):
        row: dict[str, Any] = {"key": group.key, "label": group.label, "heads": group.heads}
        anchors = sum(len(r["groups"]["anchors"]["positions"]) for r in used)
        shared = sum(
            len(set(r["groups"][group.key]["positions"]) & set(r["groups"]["anchors"]["positions"])) for r in used
        )
        row["overlap"] = shared / anchors if anchors else None
        for w, window in enumerate(WINDOWS):
            row[window] = {"tokens": int(totals[i, w, 1])}
            for s, stat in enumerate(("mean", "vs_random", "anchors_vs")):
                row[window][stat] = {
                    "value": _number(point[i, w, s]),
                    "low": _number(low[i, w, s]),
                    "high": _number(high[i, w, s]),
                }
        summary["groups"].append(row)
    return summary
