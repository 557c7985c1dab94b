"""What the seeded problem generators share: disjoint train / test splits, and the default difficulty preset."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

DEFAULT_DIFFICULTY = 2
"""The difficulty preset of a generated task (arithmetic, word problems) when none is given: ``task.difficulty`` of
``reasonattn fit`` and the generators' default alike."""


def disjoint_splits(
    generate: Callable[..., list[dict[str, Any]]],
    key: Callable[[dict[str, Any]], Hashable],
    n_train: int,
    n_test: int,
    seed: int = 0,
    **kwargs: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, test)`` records that share no problem (as told apart by ``key``).

    The test split is drawn first from ``seed``, so it does not change when ``n_train`` does; the train split
    is drawn from ``seed + 1`` excluding the test problems (and any ``exclude`` passed in ``kwargs``).

    Args:
        generate: ``generate(n, seed, exclude=..., **kwargs) -> records``.
        key: what makes two records the same problem.
    """
    exclude = set(kwargs.pop("exclude", ()))
    test = generate(n_test, seed, exclude=exclude, **kwargs)
    train = generate(n_train, seed + 1, exclude=exclude | {key(r) for r in test}, **kwargs)
    return train, test
