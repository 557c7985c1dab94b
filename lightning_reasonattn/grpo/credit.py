"""The credit of a GRPO step: the advantage multiplier ``gamma`` of every completion token of some rollouts.

The strategies themselves are pure functions of a trace ([`credit_gamma`][lightning_reasonattn.credit_gamma]); here
they are applied to rows of a step's rollouts, with the ``random`` strategy's scores keyed to the token (run seed,
step, prompt, completion, position), so a token's draw does not depend on its batch or on the process.
"""

from __future__ import annotations

import torch

from ..capture.route import route_for
from ..functional.attention import select_layers
from ..functional.credit import RHYTHM_STRATEGIES, credit_gamma
from ..functional.keyed import keyed_uniform, mix
from ..functional.trace import RhythmTrace
from .settings import CreditSettings
from .step_data import Rollouts

SAMPLE_STREAM, CREDIT_STREAM = 1, 2
"""The keyed random streams of a run: the rollouts' sampling, and the ``random`` credit strategy."""


def check_credit_layers(settings: CreditSettings, model: torch.nn.Module) -> None:
    """Refuse ``credit.layers`` that the model does not have, before the first step (a strategy that reads the
    attention only; the others capture nothing).

    Raises:
        ValueError: with the setting, the model's number of layers and the fix.
    """
    if settings.strategy not in RHYTHM_STRATEGIES:
        return
    num_layers = route_for(model).num_layers
    try:
        select_layers(num_layers, settings.layers)
    except ValueError as err:
        raise ValueError(f"credit.layers={settings.layers!r}: {err}") from None


def keyed_scores(rollouts: Rollouts, rows: slice, seed: int) -> torch.Tensor | None:
    """``[b, P + T]`` uniform scores of ``rows``, keyed by ``(seed, step, prompt, j, position)`` (``None`` for
    rollouts sampled without keys: the ``random`` strategy then draws from the process RNG)."""
    if rollouts.stream_step is None:
        return None
    keys = mix(seed, CREDIT_STREAM, rollouts.stream_step, rollouts.prompt_index[rows], rollouts.sample_index[rows])
    n = rollouts.ids.shape[1]
    positions = torch.arange(n) - (n - rollouts.width)  # 0 at the first completion token
    return keyed_uniform(mix(keys[:, None], positions[None, :])).float()


def rows_gamma(
    settings: CreditSettings, rollouts: Rollouts, rows: slice, trace: RhythmTrace | None, entropy: torch.Tensor
) -> torch.Tensor:
    """``[b, T]`` gamma of the completion tokens of ``rows`` (1 for ``uniform``).

    Args:
        settings: the strategy and its numbers.
        rollouts: the step's rollouts.
        rows: the rows measured together.
        trace: their rhythm (``None`` unless the strategy reads the attention).
        entropy: ``[b, T]`` their token entropies (read by the ``entropy`` strategy).
    """
    width = rollouts.width
    response = rollouts.response_mask[rows]
    full_entropy = None  # pragma: no mutate (read by the entropy strategy only, which sets it below)
    if settings.strategy == "entropy":
        full_entropy = torch.full(response.shape, float("nan"), device=response.device)
        full_entropy[:, -width:] = entropy
    gamma = credit_gamma(
        trace,
        settings.strategy,
        response_mask=response,
        q=settings.q if trace is None else None,
        gamma_amp=settings.gamma_amp,
        alpha=settings.alpha,
        normalize=settings.normalize,
        entropy=full_entropy,
        scores=keyed_scores(rollouts, rows, settings.seed) if settings.strategy == "random" else None,
        check=False,  # pragma: no mutate (True would only check again what CreditSettings checked when built)
    )
    return gamma[:, -width:]
