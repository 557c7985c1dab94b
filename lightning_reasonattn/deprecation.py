"""Old spellings kept working for one release: renamed keywords, attributes and names, each with a
``DeprecationWarning`` that names the new spelling (standard library only: every layer may use it).

Renamed in 0.2 (issue 22, "one name per idea"): the look-back of dominated anchors ``k`` is ``look_back``; the
coupling window ``k`` / ``coupling_k`` is ``coupling_window``; the peak fraction ``top`` / ``peak_top`` / ``PEAK_TOP``
is ``peak_fraction`` / ``PEAK_FRACTION``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

REMOVAL = "0.3"
"""The release that drops the old spellings."""


def warn_renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is spelt ``new`` now (a ``DeprecationWarning`` at the caller's line)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in {REMOVAL}: use {new}.", DeprecationWarning, stacklevel=stacklevel
    )


def warn_renamed_option(old: str, new: str, command: str) -> None:
    """Warn that a command-line spelling (a flag, a config key) is ``new`` now: a ``DeprecationWarning`` attributed to
    ``__main__``, as a script's own, so that Python's default filters show it on standard error."""
    message = f"{old} is deprecated and will be removed in {REMOVAL}: use {new}."
    warnings.warn_explicit(message, DeprecationWarning, filename=command, lineno=0, module="__main__")


def translate_keywords(kwargs: dict[str, Any], renamed: dict[str, str], where: str, stacklevel: int = 4) -> None:
    """Rename the old keywords of ``kwargs`` in place, warning once for each.

    Raises:
        TypeError: the old and the new spelling both given.
    """
    for old, new in renamed.items():
        if old not in kwargs:
            continue
        if new in kwargs:
            raise TypeError(f"{where} got both {old}= and {new}=: pass {new}= only ({old}= is its old name).")
        warn_renamed(f"{where}({old}=...)", f"{new}=", stacklevel=stacklevel)
        kwargs[new] = kwargs.pop(old)


def renamed_keywords(**renamed: str) -> Callable[[F], F]:
    """Decorate a function (or a class, whose ``__init__`` is wrapped) so that it also takes the old keyword names.

    ``@renamed_keywords(k="look_back")``: a call with ``k=3`` warns and runs as ``look_back=3``. The signature seen by
    ``inspect`` (and so by jsonargparse and the docs) is the new one.
    """

    def decorate(target):
        fn = target.__init__ if isinstance(target, type) else target
        where = target.__qualname__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            translate_keywords(kwargs, renamed, where)
            return fn(*args, **kwargs)

        if isinstance(target, type):
            target.__init__ = wrapper
            return target
        return wrapper

    return decorate


def renamed_attribute(old: str, new: str) -> property:
    """A read-only property ``old`` that warns and returns ``self.<new>``."""

    def read(self):
        warn_renamed(f"{type(self).__name__}.{old}", f".{new}")
        return getattr(self, new)

    return property(read, doc=f"Deprecated: use ``{new}``.")


def moved_names(module: str, names: dict[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) for names that moved or were renamed.

    Args:
        module: the ``__name__`` of the module that held them.
        names: ``{old name: (module it lives in now, its name there)}``.
    """
    import importlib

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        home, new = names[name]
        warn_renamed(f"{module}.{name}", f"{home}.{new}")
        return getattr(importlib.import_module(home), new)

    return __getattr__
