"""How completions are sampled: [`SamplingSettings`][SamplingSettings], one object for every command, checked once.

Defaults per command (``COMMAND_DEFAULTS``): ``reasonattn fit`` (RhythmGRPO's rollouts, ``model.sampling``) 256 new
tokens at temperature 1; ``reasonattn survey`` 200 at temperature 1; ``reasonattn analyze`` 96, greedy (``--sample``:
temperature 1). ``top_p`` 1 and ``top_k`` ``None`` (no cut) everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..functional._checks import check_number
from .resolve import next_post_init

MAX_COUNT = 1_000_000
"""Bound of every count of a command (``max_new_tokens``, and the survey's ``n``, ``batch_size``, ``n_boot``, ...): a
million tokens or responses take weeks on one GPU, and ``10**30`` would fill the memory before anything is measured."""


@dataclass(frozen=True, kw_only=True)
class SamplingSettings:
    """Sampling settings: the length limit, the temperature and the cuts of the distribution.

    Attributes:
        max_new_tokens: completion length cap; a completion without EOS by then counts as truncated.
        temperature: sampling temperature (>= 0; 0 decodes greedily).
        top_p: nucleus sampling: keep the smallest set of tokens whose probability reaches top_p, in (0, 1].
        top_k: keep the k most likely tokens (None or 0: no top-k cut).
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None

    def __post_init__(self):
        check_number(
            "max_new_tokens", self.max_new_tokens, low=1, high=MAX_COUNT, integer=True, fix=f" (at most {MAX_COUNT:,})"
        )
        check_number("temperature", self.temperature, low=0, fix=" (0 decodes greedily)")
        check_number("top_p", self.top_p, low=0, high=1, low_open=True, fix=" (1: no nucleus cut)")
        if self.top_k is not None:
            check_number("top_k", self.top_k, low=0, high=MAX_COUNT, integer=True, fix=" (0 or None keeps every token)")
        next_post_init(self, SamplingSettings)

    def sampling(self) -> SamplingSettings:
        """Only the sampling knobs, as a plain ``SamplingSettings`` (of a subclass such as ``SurveySettings`` too)."""
        return SamplingSettings(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k
        )


COMMAND_DEFAULTS: dict[str, SamplingSettings] = {
    "fit": SamplingSettings(),
    "survey": SamplingSettings(max_new_tokens=200),
    "analyze": SamplingSettings(max_new_tokens=96, temperature=0.0),
}
"""The sampling defaults of each command (``fit``: ``model.sampling``; ``survey``, ``analyze``: their flags)."""
