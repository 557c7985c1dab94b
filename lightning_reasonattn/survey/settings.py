"""What decides a survey's numbers: [`SurveySettings`][SurveySettings], and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ..arguments import MAX_SEED
from ..deprecation import renamed_attribute, renamed_keywords
from ..functional._checks import check_choice, check_fraction, check_number
from ..settings import COMMAND_DEFAULTS, MAX_COUNT, CouplingSettings, RhythmSettings, SamplingSettings
from ..settings.rhythm import RENAMED as RHYTHM_RENAMED

CHAT_MODES = ("auto", "on", "off")
RENAMED = {**RHYTHM_RENAMED, "coupling_k": "coupling_window", "peak_top": "peak_fraction"}
"""Old keyword names of the survey's settings (still taken, with a ``DeprecationWarning``) and their names now."""


@renamed_keywords(**RENAMED)
@dataclass(frozen=True, kw_only=True)
class SurveySettings(RhythmSettings, CouplingSettings, SamplingSettings):
    """Everything that decides a survey's numbers (and a few things that only decide how it runs).

    Made of the package's three settings, each checked by its own class: the rhythm's knobs (``layers``, ``window``,
    ``horizon``, ``head_fraction``, ``q``, ``look_back``, ``block_size``) of
    [`RhythmSettings`][lightning_reasonattn.settings.rhythm.RhythmSettings], with the spec's defaults (``q`` and
    ``look_back`` select the token sets of the statistics: preplan, anchor, dominated anchors); the coupling's
    (``coupling_window``, ``peak_fraction``) of
    [`CouplingSettings`][lightning_reasonattn.settings.coupling.CouplingSettings]; the sampling's (``max_new_tokens``,
    ``temperature``, ``top_p``, ``top_k``) of
    [`SamplingSettings`][lightning_reasonattn.settings.sampling.SamplingSettings], with the survey's defaults.
    ``reasonattn survey`` has one flag per attribute (``--look-back``, ``--coupling-window``, ...).

    Attributes:
        model: checkpoint folder or hub name (None: the embedded default model).
        prompts: a built-in prompt set or a .jsonl, .json or .parquet file with a prompt column.
        prompt_column: the prompt column of a file.
        n: number of prompts, one response each (a file with fewer records gives fewer).
        max_new_tokens: response length limit.
        batch_size: prompts per batch (generation and measuring).
        seed: seed of the prompts and of the sampling (each batch draws from its own derived seed).
        chat: wrap prompts in the chat template: auto (when the tokenizer has one), on or off.
        num_buckets: resolution of the position-normalised profiles.
        n_boot: bootstrap resamples of the intervals (reporting only).
        level: coverage of the intervals (reporting only).
        reports: per-response reports of this many most and least coupled responses (reporting only).
        device: auto (cuda if available), cpu or cuda (not part of the fingerprint).
    """

    model: str | None = None
    prompts: str = "arithmetic"
    prompt_column: str = "prompt"
    n: int = 128
    max_new_tokens: int = COMMAND_DEFAULTS["survey"].max_new_tokens
    batch_size: int = 8
    seed: int = 0
    chat: str = "auto"
    num_buckets: int = 20
    n_boot: int = 2000
    level: float = 0.95
    reports: int = 5
    device: str = "auto"

    coupling_k = renamed_attribute("coupling_k", "coupling_window")
    peak_top = renamed_attribute("peak_top", "peak_fraction")

    REPORTING: ClassVar[tuple[str, ...]] = (
        "n",
        "q",
        "look_back",
        "coupling_window",
        "peak_fraction",
        "num_buckets",
        "n_boot",
        "level",
        "reports",
        "device",
        "block_size",
    )
    """Settings that do not change what a batch measures: the statistics' and how the run goes."""

    def __post_init__(self):
        super().__post_init__()  # the rhythm's, the coupling's and the sampling's checks, each once
        for name in ("n", "batch_size", "num_buckets", "n_boot"):
            check_number(
                name, getattr(self, name), low=1, high=MAX_COUNT, integer=True, fix=f" (at most {MAX_COUNT:,})"
            )
        check_number("seed", self.seed, low=0, high=MAX_SEED, integer=True, fix=" (at most 2**63 - 1)")
        check_fraction(self.level, "level")
        check_number("reports", self.reports, low=0, high=MAX_COUNT, integer=True, fix=" (0 writes none)")
        check_choice("chat", self.chat, CHAT_MODES)

    def measured(self) -> dict[str, Any]:
        """The settings that decide what a batch measures (what the fingerprint covers); the statistics'
        settings (``q``, ``look_back``, ``coupling_window``, ``peak_fraction``, ``num_buckets``) and ``n`` are not
        among them, so changing those reuses every finished batch."""
        measured = {key: value for key, value in self.as_dict().items() if key not in self.REPORTING}
        measured["top_k"] = measured["top_k"] or 0  # no cut: None and 0 alike (and folders made with 0 resume)
        return measured

    def as_dict(self) -> dict[str, Any]:
        """Every setting, as plain JSON values."""
        out = asdict(self)
        out["horizon"] = list(out["horizon"])
        return out

    def fingerprint(self) -> str:
        """A short hash of [`measured`][measured]: two runs with the same fingerprint measure the same batches."""
        text = json.dumps(self.measured(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
