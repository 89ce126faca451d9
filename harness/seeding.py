"""Seeded choices that depend only on a seed and a label, never on what else was built.

Every builder draws each choice about an item from its own generator
(:func:`seeded_random`), so building a subset, or building in another order, changes no item.
"""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def seeded_random(*parts: object) -> random.Random:
    """A generator seeded by a path of labels (``0, "capital:France", "template"``).

    String seeds are hashed with SHA-512 by ``random``, so the result is the same in every
    process and on every machine.
    """
    return random.Random(":".join(str(part) for part in parts))


def take(items: Sequence[T], seed: int, limit: int | None) -> list[T]:
    """``limit`` items chosen by a seeded shuffle, kept in their original order (all if None)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[index] for index in chosen]


def replicate_seeds(seeds: Sequence[int]) -> bool:
    """Whether ``seeds`` can be a recipe's replicate seeds: at least one, distinct, none negative."""
    return bool(seeds) and len(set(seeds)) == len(seeds) and min(seeds) >= 0
