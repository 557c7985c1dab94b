"""The defaults of the spec (docs/rhythm.md), as plain constants: the functions here take them as their defaults, and
the settings dataclasses ([`lightning_reasonattn.settings`][lightning_reasonattn.settings]) take theirs from them.

The rhythm: ``LAYERS`` (5 middle layers), ``WINDOW`` (W = 10), ``HORIZON`` ((10, 100)), ``HEAD_FRACTION`` (30% head
split), ``Q`` (top 40% of tokens), ``LOOK_BACK`` (3 tokens before a dominated anchor) and ``BLOCK_SIZE`` (query rows
of the capture per block: memory, not results). The coupling statistics: ``COUPLING_WINDOW`` and ``PEAK_FRACTION``.
"""

from __future__ import annotations

LAYERS = "middle"
"""Selected layers: 5 evenly spaced layers from ``L // 3`` to ``2L // 3``."""
WINDOW = 10
"""WAAD window ``W`` in tokens."""
HORIZON = (10, 100)
"""FAI horizon ``(lo, hi)`` in tokens."""
HEAD_FRACTION = 0.3
"""Share of the head pool in each of the local and global groups."""
Q = 0.4
"""Fraction of the response tokens selected as preplan / anchor tokens."""
LOOK_BACK = 3
"""Look-back in tokens of a dominated anchor and of its introductory token (the paper allows 1 to 3)."""
BLOCK_SIZE = 128
"""Query rows per block of the attention capture (memory, not results)."""

COUPLING_WINDOW = 3
"""Window of the coupling statistics: a peak counts as coupled with one within this many tokens."""
PEAK_FRACTION = 0.2
"""Peak fraction of the coupling statistics: peaks are local maxima among this top fraction of a signal."""
