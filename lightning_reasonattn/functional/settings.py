"""Moved: the rhythm's settings live in [`lightning_reasonattn.settings`][lightning_reasonattn.settings] since 0.2.

Every name of this module is still importable from here, with a ``DeprecationWarning`` that names its new home.
"""

from ..deprecation import moved_names

_HOME = "lightning_reasonattn.settings"
__getattr__ = moved_names(
    __name__,
    {
        "RhythmSettings": (_HOME, "RhythmSettings"),
        "SPEC": (_HOME, "SPEC"),
        "RHYTHM_FIELDS": (_HOME, "RHYTHM_FIELDS"),
        "LayerChoice": (f"{_HOME}.rhythm", "LayerChoice"),
        "COUPLING_K": ("lightning_reasonattn.functional.defaults", "COUPLING_WINDOW"),
        "PEAK_TOP": ("lightning_reasonattn.functional.defaults", "PEAK_FRACTION"),
    },
)
