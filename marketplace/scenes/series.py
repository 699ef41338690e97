"""The Blender series the market runs, and the one each uploaded scene renders with.

The market supports the series it has a runtime for (its own bpy, plus venvs under SCENE_RUNTIMES_DIR
installed with `python -m workers runtimes install SERIES --cache-dir <that dir's parent>`): inspection and
calibration run in the chosen series, so what the artist is quoted is what that Blender reads and renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marketplace.scenes import conf
from workers import runtimes
from workers.blend.version import UnknownBlendVersion, saved_version

FALLBACK_SERIES = "5.0"


class SeriesUnavailable(Exception):
    """No runtime of the market can open this file faithfully; the message is for the artist."""


def market_runtimes() -> dict[str, runtimes.Runtime]:
    return runtimes.installed(conf.RUNTIMES_CACHE_DIR)


def choose(blend: Path) -> tuple[runtimes.Runtime, str | None]:
    """The runtime a scene inspects and renders with, and the warning that goes with the choice."""
    available = market_runtimes()
    try:
        choice = runtimes.pick_series(saved_version(blend), [r.series for r in available.values()])
    except (UnknownBlendVersion, runtimes.SeriesRefused) as exc:
        raise SeriesUnavailable(str(exc)) from exc
    return available[choice.series.name], choice.warning


def scene_series(report: dict[str, Any]) -> str:
    """The series pinned in an inspection report (older reports: the market's own bpy)."""
    return report.get("blender_series") or runtimes.own_series() or FALLBACK_SERIES


def market_python(series: str | None) -> Path | None:
    """The interpreter the market renders `series` with (None: its own bpy); RuntimeError when it has none."""
    return runtimes.python_for(series, conf.RUNTIMES_CACHE_DIR)
