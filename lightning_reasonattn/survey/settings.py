"""What decides a survey's numbers: [`SurveySettings`][SurveySettings], and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..functional._checks import check_fraction, check_horizon, check_positive_int, check_window

CHAT_MODES = ("auto", "on", "off")


@dataclass
class SurveySettings:
    """Everything that decides a survey's numbers (and a few things that only decide how it runs).

    Attributes:
        model: checkpoint folder or hub name; ``None`` is the embedded default model.
        prompts: a built-in set (a key of [`PROMPT_SETS`][PROMPT_SETS]) or a ``.jsonl``/``.json``/``.parquet`` file.
        prompt_column: the prompt column of a file.
        n: number of prompts (one response each); a file with fewer records gives fewer.
        max_new_tokens: response length limit.
        temperature: sampling temperature (``0``: greedy); ``top_p``, ``top_k`` (``0``: off) cut the distribution.
        batch_size: prompts per batch (generation and measuring).
        seed: seed of the prompt generator and of the sampling (each batch draws from its own derived seed).
        chat: ``"auto"`` (use the tokenizer's chat template when it has one), ``"on"`` or ``"off"``.
        layers, window, horizon, head_fraction: capture settings, see
            [`capture_rhythm`][lightning_reasonattn.capture_rhythm].
        q: top fraction of preplan and anchor tokens.
        k: coupling window in tokens (``[t, t + k]`` ahead, ``[t - k, t]`` back).
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
    top_k: int = 0
    batch_size: int = 8
    seed: int = 0
    chat: str = "auto"
    layers: str | list[int] = "middle"
    window: int = 10
    horizon: tuple[int, int] = (10, 100)
    head_fraction: float = 0.3
    q: float = 0.4
    k: int = 3
    peak_top: float = 0.2
    num_buckets: int = 20
    n_boot: int = 2000
    level: float = 0.95
    reports: int = 5
    device: str = "auto"
    _reporting: tuple[str, ...] = field(
        default=("n", "q", "k", "peak_top", "num_buckets", "n_boot", "level", "reports", "device"), repr=False
    )

    def __post_init__(self):
        for name in ("n", "max_new_tokens", "batch_size", "num_buckets", "n_boot"):
            check_positive_int(getattr(self, name), name)
        check_window(self.window)
        self.horizon = check_horizon(tuple(self.horizon))
        for name in ("head_fraction", "q", "peak_top", "level", "top_p"):
            check_fraction(getattr(self, name), name)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"k={self.k!r} is invalid: the coupling window must be an integer >= 0 (default 3).")
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"temperature={self.temperature!r} is invalid: pass a number >= 0 (0 decodes greedily).")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k={self.top_k!r} is invalid: pass an integer >= 0 (0 keeps every token).")
        if isinstance(self.reports, bool) or not isinstance(self.reports, int) or self.reports < 0:
            raise ValueError(f"reports={self.reports!r} is invalid: pass an integer >= 0 (0 writes none).")
        if self.chat not in CHAT_MODES:
            raise ValueError(f"chat={self.chat!r} is invalid: use one of {', '.join(CHAT_MODES)}.")

    def measured(self) -> dict[str, Any]:
        """The settings that decide what a batch measures (what the fingerprint covers); the statistics'
        settings (``q``, ``k``, ``peak_top``, ``num_buckets``) and ``n`` are not among them, so changing those
        reuses every finished batch."""
        return {key: value for key, value in self.as_dict().items() if key not in self._reporting}

    def as_dict(self) -> dict[str, Any]:
        """Every setting, as plain JSON values."""
        out = {key: value for key, value in asdict(self).items() if key != "_reporting"}
        out["horizon"] = list(out["horizon"])
        return out

    def fingerprint(self) -> str:
        """A short hash of [`measured`][measured]: two runs with the same fingerprint measure the same batches."""
        text = json.dumps(self.measured(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
