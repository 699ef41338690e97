"""The lease's calibrated render budget (issue 11): a frame priced by its calibrated compute may not render on
far past it at that price.

The market puts `calibrated_budget_seconds` in a render lease's manifest (SLOWER_THAN_CALIBRATED_FACTOR times the
frame's calibrated time on this node's benchmark score, plus the scene load; see `marketplace.jobs.pricing`). A
render still running at the budget is stopped (the render server's wall timeout) and reported as "slower than
calibrated", which the market records as the frame's reason to fail, rather than a crash to retry elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from workers.blend.sandbox import SandboxError

SLOWER_THAN_CALIBRATED = "slower than calibrated"


class SlowerThanCalibrated(RuntimeError):
    pass


class FrameRenderer(Protocol):
    """What is asked of a renderer here (workers.blend.renderer.Renderer is one)."""

    def render(
        self, manifest: Mapping[str, Any], out_path: Path, *, timeout_s: float | None = None
    ) -> dict[str, Any]: ...


def render_within_budget(
    renderer: FrameRenderer, manifest: Mapping[str, Any], out: Path, *, limit: float
) -> dict[str, Any]:
    """`renderer.render(manifest, out)`, stopped at the manifest's calibrated budget when it is under `limit`."""
    budget = manifest.get("calibrated_budget_seconds")
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget < limit:
        return renderer.render(manifest, out)
    try:
        return renderer.render(manifest, out, timeout_s=float(budget))
    except SandboxError as exc:
        if exc.reason != "timeout":
            raise
        raise SlowerThanCalibrated(
            f"{SLOWER_THAN_CALIBRATED}: stopped after {budget:.0f} s, the lease's budget (a multiple of the frame's "
            f"calibrated render time on this node); the frame needs more compute than it was quoted for"
        ) from exc
