"""Splitting a still into a grid of tiles. Pure functions, no database.

A tile is (x, y, w, h) in pixels with y from the TOP of the image (the convention of `Frame.tile_*`, numpy and
render_kernels; dispatch turns it into Blender's bottom-up border).
"""

from __future__ import annotations

Rect = tuple[int, int, int, int]


def _cuts(length: int, parts: int) -> list[int]:
    # Boundaries i * length // parts: sizes are floor or ceil of length / parts, the larger ones spread evenly.
    return [i * length // parts for i in range(parts + 1)]


def tile_rects(*, width: int, height: int, side: int) -> list[Rect]:
    """A side x side grid covering the image exactly once, row-major from the top-left; tile sizes differ by at
    most 1 px in each direction. Side 1 is the whole image."""
    if side < 1 or width < side or height < side:
        raise ValueError(f"cannot split a {width}x{height} image into {side}x{side} tiles")
    xs, ys = _cuts(width, side), _cuts(height, side)
    return [(xs[i], ys[j], xs[i + 1] - xs[i], ys[j + 1] - ys[j]) for j in range(side) for i in range(side)]


def smallest_tile(*, width: int, height: int, side: int) -> tuple[int, int]:
    """(w, h) of the narrowest and shortest tiles of the grid."""
    return width // side, height // side
