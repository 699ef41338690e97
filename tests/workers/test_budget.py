"""The agent stops a render at the lease's calibrated budget and says "slower than calibrated" (issue 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.blend_factory import BlendFactory
from workers.blend.renderer import Renderer
from workers.budget import SLOWER_THAN_CALIBRATED, SlowerThanCalibrated, render_within_budget

pytest_plugins = ["tests.fixtures.blend_fixtures"]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def render(self, manifest: Any, out: Path, **kw: Any) -> dict[str, Any]:
        self.calls.append(kw)
        return {"seconds": 1.0}


@pytest.mark.parametrize("budget", [None, 0, -5, True, "10", 1800, 5000])
def test_without_a_usable_budget_under_the_limit_the_render_is_not_cut_short(budget: Any) -> None:
    renderer = Recorder()
    render_within_budget(renderer, {"calibrated_budget_seconds": budget}, Path("x.png"), limit=1800)
    assert renderer.calls == [{}]  # the renderer's own limit applies


def test_a_budget_under_the_limit_is_the_renders_timeout() -> None:
    renderer = Recorder()
    render_within_budget(renderer, {"calibrated_budget_seconds": 42.5}, Path("x.png"), limit=1800)
    assert renderer.calls == [{"timeout_s": 42.5}]


def test_a_real_render_past_its_budget_is_stopped_and_called_slower_than_calibrated(
    blend_factory: BlendFactory, tmp_path: Path
) -> None:
    case = blend_factory.get("demo")
    manifest = {
        "frame": 1,
        "samples": 512,
        "seed": 0,
        "resolution_x": 320,
        "resolution_y": 180,
        "device": "CPU",
        "file_format": "PNG",
        "calibrated_budget_seconds": 0.5,
    }
    with Renderer(memory_mb=4096, timeout_s=120) as renderer:
        renderer.load(case.blend, case.bundle_root)
        with pytest.raises(SlowerThanCalibrated) as caught:
            render_within_budget(renderer, manifest, tmp_path / "out.png", limit=120)
    assert str(caught.value).startswith(SLOWER_THAN_CALIBRATED) and not (tmp_path / "out.png").exists()
