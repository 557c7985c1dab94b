"""The survey's progress line: responses done, the decoding step of the batch being sampled, tokens/s and time left.

A batch of 16 responses of 200 tokens takes minutes on a CPU, so a line per batch leaves a user without news for
minutes. [`SurveyProgress`][SurveyProgress] also follows every decoding step: ``generate`` hands each step's new tokens
to a streamer ([`SurveyProgress.streamer`][SurveyProgress.streamer]), which counts them and redraws the line; it never
touches the sampling. On a terminal the line is rewritten in place (at most every ``STEP_INTERVAL_S["tty"]`` seconds);
into a log file a line is written at most every ``STEP_INTERVAL_S["log"]`` seconds, and one at the end of each batch.

While a batch decodes::

    survey [######..................] 32/128 responses, batch 5/16: step 57/200, 412 tokens/s, about 4.2 min left

At the end of a batch (the line a finished survey leaves)::

    survey [#######.................] 40/128 responses, 0.52 responses/s, about 2.8 min left

The time left assumes every response runs to ``max_new_tokens`` (an upper bound when responses end early), at the
speed of the batches measured so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TextIO

import torch

STEP_INTERVAL_S = {"tty": 0.5, "log": 10.0}
"""Least seconds between two progress lines within a batch, on a terminal and into a log."""
_BAR = 24


class SurveyProgress:
    """The survey's progress line on ``stream`` (nothing when ``stream`` is ``None``).

    Args:
        total: responses in the survey.
        batches: batches in the survey.
        max_new_tokens: the response length limit (decoding steps per batch at most).
        stream: where to write (``sys.stderr``), or ``None``.
        clock: seconds, for the rates (``time.perf_counter``; tests pass their own).
    """

    def __init__(
        self,
        total: int,
        batches: int,
        max_new_tokens: int,
        stream: TextIO | None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.total, self.batches, self.max_new_tokens = total, batches, max_new_tokens
        self.stream, self.clock = stream, clock
        self.done = self.measured = self.measured_batches = self.batch = 0
        self.measuring_s = 0.0  # in measured batches, for the rates
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_line = -float("inf")

    def streamer(self, index: int, rows: int, eos_ids: Sequence[int]) -> _DecodeSteps:
        """A ``generate`` streamer for batch ``index`` (from 0) of ``rows`` prompts; ``eos_ids`` end a response."""
        self.batch = index + 1
        return _DecodeSteps(self, rows, eos_ids)

    def update(self, count: int, measured: bool, seconds: float = 0.0) -> None:
        """A batch of ``count`` responses is done (``measured``, in ``seconds``; or reused from an earlier run)."""
        self.done += count
        if measured:
            self.measured += count
            self.measured_batches += 1
            self.measuring_s += seconds
        rate = self.measured / self.measuring_s if self.measuring_s > 0 else 0.0
        left = (self.total - self.done) / rate if rate else 0.0
        self._write(f"{rate:.2f} responses/s, about {left / 60:.1f} min left", final=True)

    def step(self, steps: int, tokens: int, seconds: float) -> None:
        """The batch being sampled has taken ``steps`` decoding steps and made ``tokens`` tokens in ``seconds``."""
        now = self.clock()
        interval = STEP_INTERVAL_S["tty" if self.tty else "log"]
        if self.stream is None or now - self._last_line < interval or seconds <= 0:
            return
        per_step = seconds / steps
        left = (self.max_new_tokens - steps) * per_step
        # the batches after this one: as long as those measured so far, or (before the first ends) decoding alone
        per_batch = (
            self.measuring_s / self.measured_batches if self.measured_batches else self.max_new_tokens * per_step
        )
        left += max(0, self.batches - self.batch) * per_batch
        self._write(
            f"batch {self.batch}/{self.batches}: step {steps}/{self.max_new_tokens}, {tokens / seconds:.0f} tokens/s, "
            f"about {left / 60:.1f} min left",
            final=False,
        )

    def _write(self, text: str, final: bool) -> None:
        if self.stream is None:
            return
        self._last_line = self.clock()
        filled = round(_BAR * self.done / max(1, self.total))
        line = f"survey [{'#' * filled}{'.' * (_BAR - filled)}] {self.done}/{self.total} responses, {text}"
        end = "\n" if not self.tty or (final and self.done >= self.total) else ""
        print(("\r\033[K" if self.tty else "") + line, end=end, file=self.stream, flush=True)


class _DecodeSteps:
    """The streamer ``generate`` calls: ``put(prompt ids)`` once, then ``put([B] new tokens)`` each step, ``end()``.

    Counts the steps and the tokens of the rows that have not ended (a row ends at its first EOS; ``generate`` pads
    it afterwards), and reports them to its [`SurveyProgress`][SurveyProgress].
    """

    def __init__(self, progress: SurveyProgress, rows: int, eos_ids: Sequence[int]):
        self.progress, self.eos = progress, torch.tensor(list(eos_ids), dtype=torch.long)
        self.ended = torch.zeros(rows, dtype=torch.bool)
        self.steps = self.tokens = 0
        self.start: float | None = None

    def put(self, value: torch.Tensor) -> None:
        if self.start is None:  # the prompt: decoding starts now
            self.start = self.progress.clock()
            return
        new = value.reshape(-1).cpu()
        self.steps += 1
        self.tokens += int((~self.ended).sum())
        self.ended |= torch.isin(new, self.eos)
        self.progress.step(self.steps, self.tokens, self.progress.clock() - self.start)

    def end(self) -> None:
        """Nothing to flush: the batch's line comes when it is measured and written."""
