"""Argument types of the ``reasonattn`` commands (``argparse`` ``type=`` functions): each turns the text of an
option into its value, or raises ``ArgumentTypeError`` with a message that names the text and what is expected."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


MAX_SEED = 2**63 - 1
"""Largest seed: ``torch.manual_seed`` takes a 64-bit integer (a larger one overflows in C++)."""


def int_in(low: int, high: int):
    """An ``argparse`` type: an integer in ``[low, high]`` (a count with a bound, e.g. so that ``--n 10**30`` is
    refused at once instead of filling the memory)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer in [{low}, {high}]")
        return value

    parse.__name__ = f"integer in [{low}, {high}]"
    return parse


def random_seed(text: str) -> int:
    """A random seed: an integer in ``[0, 2**63 - 1]`` (what ``torch.manual_seed`` accepts)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: an integer in [0, 2**63 - 1]")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0 (not NaN)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def fraction(text: str) -> float:
    """A number in ``(0, 1]``."""
    value = non_negative_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1]")
    return value


def layers_arg(text: str) -> str | list[int]:
    """``middle``, ``all`` or comma-separated layer indices (negative ones count from the end)."""
    if text in ("middle", "all"):
        return text
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'middle', 'all' or comma-separated layer indices such as 10,12,14"
        ) from None
