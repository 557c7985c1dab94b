"""Argument types of the ``reasonattn`` commands (``argparse`` ``type=`` functions): each turns the text of an
option into its value, or raises ``ArgumentTypeError`` with a message that names the text and what is expected."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from .deprecation import warn_renamed_option


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


def int_pair(text: str) -> tuple[int, int]:
    """Two comma-separated integers, such as ``10,100``."""
    try:
        low, high = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not two comma-separated integers such as 10,100") from None
    return low, high


# ------------------------------------------------------------------------------------------- flags of a dataclass
def attribute_docs(cls: type) -> dict[str, str]:
    """The one-line description of every attribute in the ``Attributes:`` sections of ``cls`` and its bases (a line
    ``name: text`` or ``a, b: text``, continued by deeper-indented lines); the class's own text wins."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        lines = (klass.__dict__.get("__doc__") or "").splitlines()
        inside, indent, names = False, None, []
        for line in lines:
            stripped = line.strip()
            if stripped == "Attributes:":
                inside, indent = True, None
                continue
            if not inside:
                continue
            depth = len(line) - len(line.lstrip())
            if not stripped or (indent is not None and depth < indent):
                inside = bool(stripped) and depth >= (indent or 0)
                continue
            head, sep, text = stripped.partition(": ")
            if indent is None or depth == indent:
                if not sep:
                    inside = False
                    continue
                indent = depth
                names = [name.strip() for name in head.split(",")]
                for name in names:
                    docs[name] = text
            else:
                for name in names:
                    docs[name] += " " + stripped
    return docs


def add_dataclass_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    parse: dict[str, Any],
    choices: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, argparse.Action]:
    """One ``--field-name`` flag per field of the dataclass ``cls``, as LightningCLI builds its options: the default
    is the field's, the help its ``Attributes:`` line; ``parse[name]`` turns the text into the value (default: the
    annotation's ``int``, ``float`` or ``str``). The dataclass checks the values when it is built.

    Returns:
        ``{flag: its argparse action}``.
    """
    docs = attribute_docs(cls)
    hints = typing.get_type_hints(cls)
    actions = {}
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    order = dict.fromkeys(name for klass in cls.__mro__ for name in vars(klass).get("__annotations__", {}))
    for f in (by_name[name] for name in order if name in by_name):  # the class's own fields first, then its bases
        kind = parse.get(f.name) or next((t for t in (int, float) if t in _members(hints[f.name])), str)
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        flag = "--" + f.name.replace("_", "-")
        actions[flag] = parser.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=default,
            choices=(choices or {}).get(f.name),
            metavar=f.name.upper() if not (choices or {}).get(f.name) else None,
            help=docs.get(f.name, "").rstrip(".") + ("" if default is None else f" (default {shown})"),
        )
    return actions


def _members(hint) -> tuple:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


class RenamedFlag(argparse.Action):
    """A flag's old spelling: hidden from ``--help``, it sets the new flag's value and warns (once per run) that it
    is deprecated (a ``DeprecationWarning`` shown as a script's own: see ``deprecation.warn_renamed_option``)."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        warn_renamed_option(option_string, self.new, parser.prog)
        setattr(namespace, self.dest, values)


def add_renamed_flags(
    parser: argparse.ArgumentParser, renamed: dict[str, str], actions: dict[str, argparse.Action]
) -> None:
    """Accept each old flag of ``renamed`` (``{"--k": "--coupling-window"}``) as its new one, with a warning.

    Args:
        parser: the parser.
        renamed: old flag -> new flag.
        actions: new flag -> its action (as [`add_dataclass_flags`][add_dataclass_flags] returns them).
    """
    for old, new in renamed.items():
        target = actions[new]
        parser.add_argument(
            old, action=RenamedFlag, new=new, dest=target.dest, type=target.type, metavar=target.metavar
        )
