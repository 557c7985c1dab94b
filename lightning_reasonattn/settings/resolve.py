"""What the settings classes share: the cooperative ``__post_init__`` chain (a settings class made of several, such as
``SurveySettings``, checks each part once) and taking settings either as one object or as keywords."""

from __future__ import annotations

from typing import Any, TypeVar

S = TypeVar("S")


def next_post_init(settings: Any, cls: type) -> None:
    """Run the ``__post_init__`` that follows ``cls``'s in ``settings``' class order (if any), so that a class built
    from several settings classes checks every part."""
    after = getattr(super(cls, settings), "__post_init__", None)
    if after is not None:
        after()


def resolve(cls: type[S], settings: S | None, name: str, **knobs: Any) -> S:
    """Settings given one way: ``settings`` (a ``cls``), or the knobs given as keywords (``None``: not given).

    Args:
        cls: the settings class.
        settings: the object, or ``None``.
        name: the parameter that takes the object (for messages).
        **knobs: the same settings as keywords; those that are ``None`` were not given.

    Raises:
        ValueError: both the object and a knob given, or a bad knob (from ``cls``).
        TypeError: ``settings`` is not a ``cls``.
    """
    given = {key: value for key, value in knobs.items() if value is not None}
    if settings is None:
        return cls(**given)
    if not isinstance(settings, cls):
        raise TypeError(f"{name}={settings!r}: pass a {cls.__name__}, e.g. {name}={cls.__name__}().")
    if given:
        shown = ", ".join(f"{key}={value!r}" for key, value in given.items())
        raise ValueError(
            f"{shown} given beside {name}=: pass the settings one way, in {name}={cls.__name__}(...) or as keywords."
        )
    return settings
