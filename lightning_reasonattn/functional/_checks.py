"""Argument checks shared by the functional math. Every error names the bad value and the fix."""

from __future__ import annotations

import math
from typing import get_args

import torch


def check_window(window: int) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r} is invalid: the WAAD window must be an integer >= 1 (default 10).")
    return window


def check_horizon(horizon) -> tuple[int, int]:
    try:
        lo, hi = horizon
    except (TypeError, ValueError):
        raise ValueError(
            f"horizon={horizon!r} is invalid: pass a pair (lo, hi) of integers with 0 <= lo <= hi, "
            "for example (10, 100)."
        ) from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or lo < 0 or lo > hi:
        raise ValueError(
            f"horizon={horizon!r} is invalid: pass a pair (lo, hi) of integers with 0 <= lo <= hi, "
            "for example (10, 100)."
        )
    return lo, hi


def check_fraction(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise ValueError(f"{name}={value!r} is invalid: it must be a number in (0, 1], for example 0.3 or 0.4.")
    return float(value)


def check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: it must be an integer >= 1.")
    return value


def check_choice(name: str, value, choices, hint: str = "") -> None:
    """Raise ``ValueError`` naming ``name``, ``value`` and the choices (a tuple or a ``Literal``) if not among them."""
    options = get_args(choices) or tuple(choices)
    if value not in options:
        raise ValueError(f"{name}={value!r} is unknown{hint}: use one of {', '.join(map(repr, options))}.")


def check_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    fix: str = "",
) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number (an int if ``integer``) within the bounds.

    ``low`` / ``high`` are inclusive unless ``low_open`` / ``high_open``; ``fix`` is appended to the message.
    """
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = [f"{'>' if low_open else '>='} {low:g}"] if low is not None else []
        bounds += [f"{'<' if high_open else '<='} {high:g}"] if high is not None else []
        what = "an integer" if integer else "a finite number"
        raise ValueError(
            f"{name}={value!r} is invalid: it must be {' '.join([what, ' and '.join(bounds)]).strip()}{fix}."
        )


def check_response_mask(response_mask: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Return ``response_mask`` as bool after checking that it is a tensor of ``shape``."""
    if not isinstance(response_mask, torch.Tensor):
        raise TypeError(
            f"response_mask must be a torch.Tensor of shape {tuple(shape)} (True at response tokens), "
            f"got {type(response_mask).__name__}."
        )
    if tuple(response_mask.shape) != tuple(shape):
        raise ValueError(
            f"response_mask has shape {tuple(response_mask.shape)}, expected {tuple(shape)}: pass one row per "
            "sequence and one entry per token (prompt + response, padding included), True at response tokens."
        )
    return response_mask.bool()
