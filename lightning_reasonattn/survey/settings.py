"""What decides a survey's numbers: [`SurveySettings`][SurveySettings], and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ..functional._checks import check_choice, check_fraction, check_number
from ..functional.settings import COUPLING_K, PEAK_TOP, RhythmSettings

CHAT_MODES = ("auto", "on", "off")
MAX_COUNT = 1_000_000
"""Bound of every count of a survey (``n``, ``batch_size``, ``n_boot``, ``max_new_tokens``, ...): a million responses
take weeks on one GPU, and ``n=10**30`` would fill the memory with prompts before anything is measured."""
MAX_SEED = 2**63 - 1
"""Largest seed (``torch.manual_seed`` takes a 64-bit integer)."""


@dataclass(frozen=True, kw_only=True)
class SurveySettings(RhythmSettings):
    """Everything that decides a survey's numbers (and a few things that only decide how it runs).

    The rhythm's knobs (``layers``, ``window``, ``horizon``, ``head_fraction``, ``q``, ``k``, ``block_size``) are
    those of [`RhythmSettings`][lightning_reasonattn.functional.settings.RhythmSettings], with the spec's defaults;
    ``q`` and ``k`` select the token sets of the statistics (preplan, anchor, dominated anchors).

    Attributes:
        model: checkpoint folder or hub name; ``None`` is the embedded default model.
        prompts: a built-in set (a key of [`PROMPT_SETS`][lightning_reasonattn.survey.run.PROMPT_SETS]) or a
            ``.jsonl``/``.json``/``.parquet`` file.
        prompt_column: the prompt column of a file.
        n: number of prompts (one response each); a file with fewer records gives fewer.
        max_new_tokens: response length limit.
        temperature: sampling temperature (``0``: greedy); ``top_p``, ``top_k`` (``None`` or ``0``: off) cut the
            distribution.
        batch_size: prompts per batch (generation and measuring).
        seed: seed of the prompt generator and of the sampling (each batch draws from its own derived seed).
        chat: ``"auto"`` (use the tokenizer's chat template when it has one), ``"on"`` or ``"off"``.
        coupling_k: coupling window in tokens (``[t, t + k]`` ahead, ``[t - k, t]`` back; ``--k`` on the command
            line).
        peak_top: peaks are local maxima among this top fraction of a signal.
        num_buckets: resolution of the position-normalised profiles.
        n_boot, level: bootstrap resamples and interval coverage (reporting only).
        reports: per-response reports of this many most and least coupled responses (reporting only).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (not part of the fingerprint).
    """

    model: str | None = None
    prompts: str = "arithmetic"
    prompt_column: str = "prompt"
    n: int = 128
    max_new_tokens: int = 200
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    batch_size: int = 8
    seed: int = 0
    chat: str = "auto"
    coupling_k: int = COUPLING_K
    peak_top: float = PEAK_TOP
    num_buckets: int = 20
    n_boot: int = 2000
    level: float = 0.95
    reports: int = 5
    device: str = "auto"

    REPORTING: ClassVar[tuple[str, ...]] = (
        "n",
        "q",
        "k",
        "coupling_k",
        "peak_top",
        "num_buckets",
        "n_boot",
        "level",
        "reports",
        "device",
        "block_size",
    )
    """Settings that do not change what a batch measures: the statistics' and how the run goes."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("n", "max_new_tokens", "batch_size", "num_buckets", "n_boot"):
            check_number(
                name, getattr(self, name), low=1, high=MAX_COUNT, integer=True, fix=f" (at most {MAX_COUNT:,})"
            )
        check_number("seed", self.seed, low=0, high=MAX_SEED, integer=True, fix=" (at most 2**63 - 1)")
        for name in ("peak_top", "level", "top_p"):
            check_fraction(getattr(self, name), name)
        check_number(
            "coupling_k", self.coupling_k, low=0, high=MAX_COUNT, integer=True, fix=" (the coupling window; default 3)"
        )
        check_number("temperature", self.temperature, low=0, fix=" (0 decodes greedily)")
        if self.top_k is not None:
            check_number("top_k", self.top_k, low=0, high=MAX_COUNT, integer=True, fix=" (0 or None keeps every token)")
        check_number("reports", self.reports, low=0, high=MAX_COUNT, integer=True, fix=" (0 writes none)")
        check_choice("chat", self.chat, CHAT_MODES)

    def measured(self) -> dict[str, Any]:
        """The settings that decide what a batch measures (what the fingerprint covers); the statistics'
        settings (``q``, ``k``, ``coupling_k``, ``peak_top``, ``num_buckets``) and ``n`` are not among them, so
        changing those reuses every finished batch."""
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
