"""The no-grad scoring pass of a GRPO step (``num_iterations > 1``): old log-probabilities and the rhythm."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..functional.trace import RhythmTrace
from ..rollout.logprobs import measured_logprobs


@dataclass
class Scored:
    """What the no-grad scoring pass gives for a micro-batch."""

    old_logp: torch.Tensor  # [b, T]
    trace: RhythmTrace | None  # over the full [b, P + T] sequences
    entropy: torch.Tensor | None  # [b, T], entropy of the distribution each completion token came from


def score(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    width: int,
    temperature: float = 1.0,
    rhythm: dict | None = None,
    want_entropy: bool = False,
) -> Scored:
    """One no-grad forward: old log-probabilities, and (if ``rhythm`` is given) the RhythmTrace of the same pass.

    Args:
        rhythm: ``capture_rhythm`` settings (``layers``, ``window``, ``horizon``, ``block_size``,
            ``head_fraction``, ``q``, ``k``), or ``None`` to skip the capture.
    """
    response = torch.zeros_like(attention_mask, dtype=torch.bool)
    response[:, -width:] = attention_mask[:, -width:].bool()
    with torch.no_grad():
        old_logp, entropy, trace = measured_logprobs(
            model, input_ids, attention_mask, response, width, temperature, rhythm
        )
    return Scored(old_logp, trace, entropy if want_entropy else None)
