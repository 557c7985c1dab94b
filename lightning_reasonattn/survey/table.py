"""The survey's table: which statistics it reports, the paper's values beside them, and the reduction.

Every statistic is a ratio of sums of per-response counts (the columns of
[`response_counts`][lightning_reasonattn.functional.coupling.response_counts]), either ``a / b`` or
``(a / b) / (c / d)``, computed by [`ratio_of_sums`][lightning_reasonattn.functional.coupling.ratio_of_sums]; the
statistics that ``RhythmCoupling`` also reports take their terms (and names) from
[`COUPLING_RATIOS`][lightning_reasonattn.functional.coupling.COUPLING_RATIOS]; its interval is the percentile
bootstrap over responses ([`bootstrap_ci`][lightning_reasonattn.functional.bootstrap.bootstrap_ci]).
Definitions: docs/rhythm.md, "Coupling statistics".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..deprecation import renamed_keywords
from ..functional import defaults
from ..functional.bootstrap import bootstrap_ci, profile_sums
from ..functional.coupling import COUPLING_RATIOS, direction_ratios, ratio_of_sums, response_counts
from .settings import SurveySettings


@dataclass(frozen=True)
class Statistic:
    """One row of the table.

    Attributes:
        key: name in ``survey.json``.
        label: what a reader sees.
        terms: count columns ``(a, b)`` for ``a / b`` or ``(a, b, c, d)`` for ``(a / b) / (c / d)``.
        paper: the paper's value (Qwen3-4B-Base on GSM8K), or ``None`` where it reports none.
        paper_text: how the paper's value is shown.
    """

    key: str
    label: str
    terms: tuple[str, ...]
    paper: float | None = None
    paper_text: str = "-"

    def __call__(self, sums: dict[str, torch.Tensor]) -> torch.Tensor:
        return ratio_of_sums(sums, self.terms)

    @property
    def formula(self) -> str:
        a, b, *rest = self.terms
        text = f"sum {a} / sum {b}"
        return f"({text}) / (sum {rest[0]} / sum {rest[1]})" if rest else text


def _direction(key: str, what: str, events: str, paper: tuple[float, float] | None = None) -> list[Statistic]:
    rate, shuffled = paper or (None, None)
    terms = direction_ratios(key, events)
    return [
        Statistic(f"{key}_rate", what, terms[f"{key}_rate"], rate, "-" if rate is None else f"{rate:.3f}"),
        Statistic(
            f"{key}_shuffled",
            "... the same at shuffled positions",
            terms[f"{key}_shuffled"],
            shuffled,
            "-" if shuffled is None else f"{shuffled:.3f}",
        ),
        Statistic(
            f"{key}_lift",
            "... lift (rate / shuffled)",
            terms[f"{key}_lift"],
            None if rate is None else rate / shuffled,
            "-" if rate is None else f"{rate / shuffled:.2f}",
        ),
    ]


STATISTICS: tuple[Statistic, ...] = (
    Statistic(
        "entropy_lift",
        "Token entropy at WAAD peaks / mean token entropy",
        COUPLING_RATIOS["entropy_lift"],
        0.361 / 0.239,
        f"{0.361 / 0.239:.2f}",
    ),
    Statistic(
        "entropy_at_peaks",
        "... token entropy at WAAD peaks (nats)",
        COUPLING_RATIOS["entropy_at_peaks"],
        0.361,
        "0.361",
    ),
    Statistic("entropy_mean", "... mean token entropy (nats)", COUPLING_RATIOS["entropy_mean"], 0.239, "0.239"),
    Statistic(
        "entropy_jump_lift",
        "Token entropy at WAAD-jump peaks / mean token entropy",
        ("entropy_jump_peak_sum", "entropy_jump_peak_count", "entropy_sum", "entropy_count"),
    ),
    *_direction(
        "fai_preceded", "FAI peaks preceded by or at a WAAD peak (paper's direction)", "fai_peaks", (0.525, 0.369)
    ),
    *_direction("waad_followed", "WAAD peaks followed by or at an FAI peak", "waad_peaks"),
    *_direction("anchor_preceded", "Anchor tokens preceded by or at a preplan token", "anchors"),
    *_direction("preplan_followed", "Preplan tokens followed by or at an anchor token", "preplans"),
    Statistic("dominated_share", "Anchor tokens that are locally dominated", ("dominated", "anchors")),
    Statistic("mean_waad", "Mean WAAD", ("waad_sum", "waad_count")),
    Statistic("mean_fai", "Mean FAI", ("fai_sum", "fai_count")),
)
"""The rows of the survey table, in order."""

MIN_PEAKS_TO_RANK = 3
"""A response needs this many FAI peaks to be ranked as most or least coupled."""


def _padded(responses: list[dict[str, Any]], name: str, width: int) -> torch.Tensor:
    rows = [[float("nan") if v is None else v for v in r[name]] for r in responses]
    return torch.tensor([row + [float("nan")] * (width - len(row)) for row in rows], dtype=torch.float32)


@renamed_keywords(coupling_k="coupling_window", top="peak_fraction")
def count_responses(
    responses: list[dict[str, Any]],
    *,
    coupling_window: int = defaults.COUPLING_WINDOW,
    peak_fraction: float = defaults.PEAK_FRACTION,
    q: float = defaults.Q,
    look_back: int = defaults.LOOK_BACK,
    num_buckets: int = 20,
    chunk: int = 256,
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Per-response counts and profile sums from the stored per-token signals.

    Args:
        responses: records with ``waad``, ``fai`` and ``entropy`` lists over the response tokens (``None`` where
            undefined), as [`measure_batch`][lightning_reasonattn.survey.run.measure_batch] writes them.
        coupling_window: coupling window, see
            [`response_counts`][lightning_reasonattn.functional.coupling.response_counts].
        peak_fraction: peak fraction.
        q: top fraction of preplan and anchor tokens.
        look_back: look-back of dominated anchors.
        num_buckets: profile resolution.
        chunk: responses counted at a time.

    Returns:
        ``(names, counts [R, S], profile [R, 4 * num_buckets])``: the count columns, one row per response, and
        the WAAD sums, WAAD counts, FAI sums, FAI counts per bucket, side by side.
    """
    names, counts, profiles = None, [], []
    for start in range(0, len(responses), chunk):
        part = responses[start : start + chunk]
        width = max(1, *(len(r["waad"]) for r in part))
        mask = torch.tensor([[i < len(r["waad"]) for i in range(width)] for r in part])
        waad, fai, entropy = (_padded(part, name, width) for name in ("waad", "fai", "entropy"))
        found = response_counts(waad, fai, mask, entropy, coupling_window, peak_fraction, q, look_back)
        names = names or sorted(found)
        counts.append(torch.stack([found[name] for name in names], 1))
        sums = [torch.cat(profile_sums(signal, mask, num_buckets), 1) for signal in (waad, fai)]
        profiles.append(torch.cat(sums, 1))
    return names, torch.cat(counts), torch.cat(profiles)


def _number(value: torch.Tensor) -> float | None:
    value = float(value)
    return None if value != value or value in (float("inf"), -float("inf")) else value


def response_lift(counts: dict[str, float]) -> float | None:
    """A response's own lift in the paper's direction, or ``None`` below [`MIN_PEAKS_TO_RANK`][MIN_PEAKS_TO_RANK] FAI
    peaks."""
    if counts["fai_peaks"] < MIN_PEAKS_TO_RANK or counts["fai_preceded_shuffled"] <= 0:
        return None
    return counts["fai_preceded"] / counts["fai_preceded_shuffled"]


def rank_coupled(per_response: list[dict[str, Any]], count: int) -> tuple[list[int], list[int]]:
    """Indices of the ``count`` most and ``count`` least coupled responses (by their ``lift``; more FAI peaks,
    then the earlier response, first among ties); the two lists never share a response."""
    scored = [(r["lift"], -r["fai_peaks"], i) for i, r in enumerate(per_response) if r["lift"] is not None]
    most = [i for _, _, i in sorted(scored, key=lambda s: (-s[0], s[1], s[2]))[:count]]
    least = [i for _, _, i in sorted(scored, key=lambda s: (s[0], s[1], s[2])) if i not in most][:count]
    return most, least


def summarize_survey(responses: list[dict[str, Any]], settings: SurveySettings) -> dict:
    """Pool the responses: every statistic with its bootstrap interval, and the profiles.

    Args:
        responses: records with the per-token signals (see [`count_responses`][count_responses]), ``response_ids``,
            ``truncated`` and ``prompt_index``.
        settings: the statistics' settings: ``coupling_window``, ``peak_fraction``, ``q`` and ``look_back`` (token
            sets),
            ``num_buckets`` (profile resolution), ``n_boot`` and ``level`` (bootstrap resamples, one set for every
            statistic, and coverage), ``seed`` (of the resampling).

    Returns:
        ``{"table": [...], "profiles": {...}, "responses": R, "response_tokens", "truncated", "per_response"}``;
        each table row holds ``key``, ``label``, ``value``, ``low``, ``high``, ``paper``, ``paper_text``,
        ``formula`` (``None`` for an undefined value, e.g. no peak at all).
    """
    if not responses:
        raise ValueError("no responses to summarize: the survey measured nothing.")
    num_buckets = settings.num_buckets
    names, counts, profile = count_responses(
        responses,
        coupling_window=settings.coupling_window,
        peak_fraction=settings.peak_fraction,
        q=settings.q,
        look_back=settings.look_back,
        num_buckets=num_buckets,
    )
    n_boot, level, seed = settings.n_boot, settings.level, settings.seed

    def table_stat(sums: torch.Tensor) -> torch.Tensor:
        by_name = {name: sums[..., i] for i, name in enumerate(names)}
        return torch.stack([stat(by_name) for stat in STATISTICS], -1)

    point, low, high = bootstrap_ci(counts, table_stat, n_boot, level, seed)
    table = [
        {
            "key": stat.key,
            "label": stat.label,
            "value": _number(point[i]),
            "low": _number(low[i]),
            "high": _number(high[i]),
            "paper": stat.paper,
            "paper_text": stat.paper_text,
            "formula": stat.formula,
        }
        for i, stat in enumerate(STATISTICS)
    ]

    def profile_stat(sums: torch.Tensor) -> torch.Tensor:
        w_sum, w_count, f_sum, f_count = sums.split(num_buckets, -1)
        return torch.cat([w_sum / w_count, f_sum / f_count], -1)

    p_point, p_low, p_high = bootstrap_ci(profile, profile_stat, n_boot, level, seed)
    profiles: dict[str, Any] = {"buckets": num_buckets}
    for j, name in enumerate(("waad", "fai")):
        part = slice(j * num_buckets, (j + 1) * num_buckets)
        profiles[name] = {
            key: [_number(v) for v in values[part]]
            for key, values in (("mean", p_point), ("low", p_low), ("high", p_high))
        }
    per_response = []
    for r, row in zip(responses, counts.tolist(), strict=True):
        own = dict(zip(names, row, strict=True))
        per_response.append(
            {
                "prompt_index": r["prompt_index"],
                "tokens": len(r["response_ids"]),
                "truncated": r["truncated"],
                "fai_peaks": int(own["fai_peaks"]),
                "lift": response_lift(own),
            }
        )
    return {
        "table": table,
        "profiles": profiles,
        "responses": len(responses),
        "response_tokens": int(counts[:, names.index("positions")].sum()),
        "truncated": sum(bool(r["truncated"]) for r in responses),
        "per_response": per_response,
    }
