"""Argument checks shared by the functional math. Every error names the bad value and the fix.

Numbers: any integral scalar (``int``, ``numpy.int64``...) is accepted where an integer is meant and any real
scalar (``float``, ``numpy.float32``...) where a fraction is meant; they come back as plain Python ``int`` and
``float``. Booleans are refused where a number is meant.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, get_args

if TYPE_CHECKING:  # the number checks run without torch (the settings, the command line's parser); masks need it
    import torch


def as_int(value) -> int | None:
    """``value`` as a Python int if it is an integral scalar (not a bool), else None."""
    # bool is an Integral; numpy's bool is neither Integral nor Real, so the second test refuses it.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def as_real(value) -> float | None:
    """``value`` as a Python float if it is a real scalar (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


MAX_INTEGER = 2**31 - 1
"""The largest count, size, length or index a setting takes: past any sequence, and safe in every integer tensor."""


def check_window(window: int) -> int:
    w = as_int(window)
    if w is None or not 1 <= w <= MAX_INTEGER:
        raise ValueError(
            f"window={window!r} is invalid: the WAAD window must be an integer in [1, {MAX_INTEGER}] (default 10)."
        )
    return w


def check_horizon(horizon) -> tuple[int, int]:
    message = (
        f"horizon={horizon!r} is invalid: pass a pair (lo, hi) of integers with 0 <= lo <= hi <= {MAX_INTEGER}, for "
        "example (10, 100)."
    )
    try:
        lo, hi = horizon
    except (TypeError, ValueError):
        raise ValueError(message) from None
    lo, hi = as_int(lo), as_int(hi)
    if lo is None or hi is None or lo < 0 or lo > hi or hi > MAX_INTEGER:
        raise ValueError(message)
    return lo, hi


def check_fraction(value: float, name: str) -> float:
    x = as_real(value)
    if x is None or not 0.0 < x <= 1.0:
        raise ValueError(f"{name}={value!r} is invalid: it must be a number in (0, 1], for example 0.3 or 0.4.")
    return x


def check_positive_int(value: int, name: str) -> int:
    """``value`` as a Python int, or ``ValueError`` unless it is an integer >= 1 (see ``check_number``)."""
    return check_number(name, value, low=1, integer=True)


def check_mask_dtype(mask: torch.Tensor, name: str, meaning: str) -> None:
    """Refuse a floating (or complex) mask: ``0.5`` would silently read as True. O(1), no device sync."""
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(
            f"{name} has dtype {mask.dtype}: a mask must be bool (or integer 0/1), {meaning}; a float mask is "
            f"ambiguous (0.5 would count as True). Convert it explicitly, e.g. {name}.bool() or ({name} > 0.5)."
        )


def check_mask_values(mask: torch.Tensor, name: str) -> None:
    """Refuse an integer mask holding anything but 0 and 1 (one device sync: call it once per batch)."""
    import torch

    if mask.dtype == torch.bool:
        return
    bad = mask[(mask != 0) & (mask != 1)]
    if bad.numel():
        raise ValueError(
            f"{name} holds values other than 0 and 1 ({bad[0].item()}): pass a bool mask or 0/1 integers "
            f"(packed-sequence ids are not supported; split the sequences into rows)."
        )


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
) -> int | float:
    """``value`` as a Python int (``integer``) or float, or ``ValueError`` unless it is a finite number within bounds.

    ``low`` / ``high`` are inclusive unless ``low_open`` / ``high_open``; ``fix`` is appended to the message. An
    integer with no ``high`` is at most [`MAX_INTEGER`][MAX_INTEGER] (a larger one overflows the tensors it sizes);
    a ``high`` given is the caller's bound, larger or not (a seed sizes no tensor).
    """
    if integer and high is None:
        high = MAX_INTEGER
    x = as_int(value) if integer else as_real(value)
    ok = x is not None and math.isfinite(x)
    if ok and low is not None:
        ok = x > low if low_open else x >= low
    if ok and high is not None:
        ok = x < high if high_open else x <= high
    if not ok:
        bounds = [f"{'>' if low_open else '>='} {_number(low)}"] if low is not None else []
        bounds += [f"{'<' if high_open else '<='} {_number(high)}"] if high is not None else []
        what = "an integer" if integer else "a finite number"
        raise ValueError(
            f"{name}={value!r} is invalid: it must be {' '.join([what, ' and '.join(bounds)]).strip()}{fix}."
        )
    return x


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def check_response_mask(response_mask: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Return ``response_mask`` as bool after checking that it is a bool or integer tensor of ``shape``."""
    import torch

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
    check_mask_dtype(response_mask, "response_mask", "True at response tokens")
    return response_mask.bool()
