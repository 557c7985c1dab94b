"""Credit strategies: from a [`RhythmTrace`][RhythmTrace] to the advantage multiplier ``gamma`` of every token.

The policy-gradient advantage of response token ``t`` becomes ``gamma[t] * A_t``. With ``g = gamma_amp``:

* ``uniform``: ``gamma = 1`` (plain GRPO);
* ``local_chunk``: ``1 + (g - 1) [t in T_loc]``;
* ``global_anchor``: ``1 + (g - 1) [t in T_glob]``;
* ``coupled``: ``1 + (g-1)[t in T_glob \\ D] + (1-alpha)(g-1)[t in D] + alpha (g-1)[t in I(D)]``
  (bonuses of a token in several sets add up);
* ``random``: ``1 + (g - 1) [t in S]`` for a uniformly random subset ``S`` of ``ceil(q n)`` response tokens;
* ``entropy``: ``1 + (g - 1) [t in top_fraction(entropy, q)]``.

Which advantages get scaled (both signs or positive only) is the RL code's business, not this module's.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from . import defaults
from ._checks import as_real, check_fraction
from .tokens import top_fraction
from .trace import RhythmTrace, select_tokens

Strategy = Literal["uniform", "random", "entropy", "local_chunk", "global_anchor", "coupled"]
STRATEGIES = get_args(Strategy)
RHYTHM_STRATEGIES = ("local_chunk", "global_anchor", "coupled")
"""The strategies that read the attention (they need a RhythmTrace)."""
GAMMA_AMP = 1.5
"""The spec's default advantage multiplier of a selected token (the paper's 1.5)."""
ALPHA = 0.5
"""The spec's default share of a dominated anchor's bonus moved to its introductory token."""


def credit_gamma(
    trace: RhythmTrace | None,
    strategy: str,
    *,
    response_mask: torch.Tensor | None = None,
    q: float | None = None,
    gamma_amp: float = GAMMA_AMP,
    alpha: float = ALPHA,
    normalize: bool = False,
    entropy: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    scores: torch.Tensor | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Per-token advantage multipliers.

    Args:
        trace: the rhythm of the batch; ``uniform``, ``random`` and ``entropy`` read only its response mask
            and accept ``None`` with ``response_mask`` instead.
        strategy: one of ``uniform``, ``random``, ``entropy``, ``local_chunk``, ``global_anchor``, ``coupled``.
        q: top fraction; ``None`` uses the trace's own (and its token sets as they are). Another value
            re-selects the tokens from ``trace.waad`` and ``trace.fai``.
        gamma_amp: the amplification ``g`` (> 0).
        alpha: share of the bonus moved from a dominated anchor to its introductory token, in [0, 1].
        normalize: rescale so that the mean of ``gamma`` over each response is 1.
        response_mask: ``[B, N]`` bool, when ``trace`` is None.
        entropy: ``[B, N]`` token entropies of the policy, required by ``entropy``.
        generator: random source of ``random`` (seed it for reproducible runs).
        scores: ``[B, N]`` random scores for ``random`` instead of ``torch.rand(generator=generator)`` (e.g. keyed
            per token, so that a token's draw does not depend on its batch); the top ``q`` of each response win.
        check: check ``strategy``, ``q``, ``gamma_amp`` and ``alpha``; ``False`` for a caller whose settings were
            checked once when built (RhythmGRPO's ``CreditSettings``, at every mini-batch). The data are checked
            either way.

    Returns:
        ``[B, N]`` float32 with no gradient; 1 outside the response.

    Raises:
        ValueError: an unknown strategy, a bad number, a ``response_mask`` that is not ``[B, N]``, or ``entropy``
            missing or of the wrong shape.
    """
    if check:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r} is unknown: use one of {', '.join(STRATEGIES)}.")
        amp, share = as_real(gamma_amp), as_real(alpha)
        if amp is None or not amp > 0:
            raise ValueError(f"gamma_amp={gamma_amp!r} is invalid: it must be a number > 0 (the paper uses 1.5).")
        if share is None or not 0.0 <= share <= 1.0:
            raise ValueError(f"alpha={alpha!r} is invalid: it must be a number in [0, 1] (default 0.5).")
        gamma_amp, alpha = amp, share
        q = None if q is None else check_fraction(q, "q")
    if trace is None and (strategy in RHYTHM_STRATEGIES or response_mask is None):
        raise ValueError(
            f"strategy={strategy!r} needs a RhythmTrace (from capture_rhythm)"
            + ("." if strategy in RHYTHM_STRATEGIES else " or a response_mask.")
        )
    mask = (trace.response_mask if trace is not None else response_mask).bool()
    if mask.ndim != 2:
        raise ValueError(
            f"response_mask has shape {tuple(mask.shape)}: expected [B, N], a batch (unsqueeze(0) for one response)."
        )
    q_used = (trace.q if trace is not None else defaults.Q) if q is None else q
    bonus = gamma_amp - 1.0
    with torch.no_grad():
        if strategy == "uniform":
            extra = torch.zeros(mask.shape, device=mask.device)
        elif strategy == "random":
            if scores is None:
                scores = torch.rand(mask.shape, generator=generator, device="cpu")
            elif tuple(scores.shape) != tuple(mask.shape):
                raise ValueError(f"scores has shape {tuple(scores.shape)}: expected {tuple(mask.shape)}.")
            scores = scores.float().to(mask.device)
            extra = bonus * top_fraction(_on_response(scores, mask), q_used).float()
        elif strategy == "entropy":
            if entropy is None or tuple(entropy.shape) != tuple(mask.shape):
                got = None if entropy is None else tuple(entropy.shape)
                raise ValueError(
                    f"strategy='entropy' needs entropy= token entropies of shape {tuple(mask.shape)}, got {got}."
                )
            extra = bonus * top_fraction(_on_response(entropy.detach().float(), mask), q_used).float()
        else:
            sets = _token_sets(trace, q)
            if strategy == "local_chunk":
                extra = bonus * sets["preplan"].float()
            elif strategy == "global_anchor":
                extra = bonus * sets["anchor"].float()
            else:
                anchor, dom, intro = sets["anchor"], sets["dominated"], sets["intro"]
                extra = bonus * ((anchor & ~dom).float() + (1.0 - alpha) * dom.float() + alpha * intro.float())
        gamma = torch.where(mask, 1.0 + extra, torch.ones_like(extra))
        if normalize:
            count = mask.sum(-1, keepdim=True).clamp_min(1)
            mean = (gamma * mask).sum(-1, keepdim=True) / count
            gamma = torch.where(mask, gamma / mean, gamma)
    return gamma


def _on_response(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, torch.full_like(values, torch.nan))


def _token_sets(trace: RhythmTrace, q: float | None) -> dict[str, torch.Tensor]:
    if q is None or q == trace.q:
        return {
            "preplan": trace.preplan,
            "anchor": trace.anchor,
            "dominated": trace.dominated,
            "intro": trace.intro,
        }
    return select_tokens(trace.waad, trace.fai, q, trace.look_back)
