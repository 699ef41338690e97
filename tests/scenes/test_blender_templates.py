"""Blender's own startup templates (shipped in the bpy wheel), switched to Cycles with a camera, are accepted
and render: their links to Blender's bundled asset libraries (the essentials brushes of 4.3+) resolve to the
rendering Blender's own copy and never show a server path. An outside library is still refused
(tests/scenes/test_inspection.py, `outside_library`)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from marketplace.scenes.inspection import inspect_upload
from workers.blend.renderer import Renderer

pytestmark = [pytest.mark.slow]
TEMPLATES = ("Sculpting", "2D_Animation", "VFX", "Storyboarding", "Video_Editing")
AS_ARTIST_SAVES = """
import bpy, sys
template, out = sys.argv[-2:]
path = bpy.utils.system_resource("SCRIPTS") + f"/startup/bl_app_templates_system/{template}/startup.blend"
bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 2
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 36, 100
if scene.camera is None:
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


@pytest.fixture(scope="module")
def saved_templates(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("templates")
    files = {}
    for template in TEMPLATES:
        out = root / template / f"{template.lower()}.blend"
        out.parent.mkdir()
        subprocess.run([sys.executable, "-c", AS_ARTIST_SAVES, template, str(out)], check=True, capture_output=True)
        files[template] = out
    return files


@pytest.mark.parametrize("template", TEMPLATES)
def test_blenders_own_templates_are_accepted_and_render(saved_templates, template, tmp_path):
    blend = saved_templates[template]
    found = inspect_upload(fileobj=io.BytesIO(blend.read_bytes()), kind="blend", blend_path=blend.name)
    assert found.accepted, found.refusal
    text = " ".join([found.refusal, *found.warnings, str(found.report.get("external_files"))])
    assert "site-packages" not in text and "/datafiles/" not in text  # no server path, ever
    assert not any("library" in w for w in found.warnings)  # the bundled brushes are not the artist's libraries
    assert found.report["missing_files"] == []
    with Renderer(timeout_s=120) as renderer:
        renderer.load(blend, blend.parent)
        manifest = {
            "frame": found.report["frame_start"],
            "samples": 2,
            "seed": 0,
            "resolution_x": 64,
            "resolution_y": 36,
            "file_format": "PNG",
            "use_denoising": False,
            "camera": "",
            "device": "CPU",
            "threads": 0,
        }
        renderer.render(manifest, tmp_path / "out.png")
    assert (tmp_path / "out.png").stat().st_size > 0


def test_the_sculpting_templates_bundled_brushes_are_reported_as_blenders_own(saved_templates):
    blend = saved_templates["Sculpting"]
    found = inspect_upload(fileobj=io.BytesIO(blend.read_bytes()), kind="blend", blend_path=blend.name)
    bundled = [row for row in found.report["external_files"] if row.get("bundled")]
    assert bundled, found.report["external_files"]
    assert all(row["raw_path"].startswith("<blender>/assets/") for row in bundled)
    assert found.report["bundled_libraries"] and not found.report["has_linked_libraries"]
