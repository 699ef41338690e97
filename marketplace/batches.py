"""Long lists written a statement's worth at a time (Postgres takes at most 65,535 parameters a statement)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")


def batched(items: list[T], size: int) -> Iterator[list[T]]:
    """`items` in consecutive slices of at most `size` (`itertools.batched` of Python 3.12, as slices)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
