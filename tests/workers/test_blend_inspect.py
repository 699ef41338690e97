"""Inspection of uploads in the sandboxed bpy child: exact facts of the demo scene, every bad scene."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import workers.blend
from tests.fixtures.blend_factory import KINDS, BlendFactory
from workers.blend import BlendFileError, SandboxError, inspect_scene

# With or without the repo conftest: the session-cached scenes.
pytest_plugins = ["tests.fixtures.blend_fixtures"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reports(blend_factory: BlendFactory) -> dict[str, Any]:
    """Every case inspected once (one bpy child each, ~0.4 s)."""
    blend_factory.prebuild(KINDS)
    out: dict[str, Any] = {}
    for kind in KINDS:
        case = blend_factory.get(kind)
        try:
            out[kind] = inspect_scene(case.blend, bundle_root=case.bundle_root)
        except BlendFileError as exc:
            out[kind] = exc
    return out


def test_public_function_is_the_function() -> None:
    assert callable(workers.blend.inspect_scene)
    import workers.blend.inspect_scene as module  # the submodule shares the name: still callable

    assert callable(module)


def test_demo_scene_exact_facts(reports: dict[str, Any]) -> None:
    r = reports["demo"]
    expected = {
        "blender_version_saved": "5.0",
        "blender_version": "5.0.1",
        "engine": "CYCLES",
        "frame_start": 1,
        "frame_end": 24,
        "frame_step": 1,
        "frame_count": 24,
        "fps": 24.0,
        "resolution_x": 320,
        "resolution_y": 180,
        "resolution_percentage": 100,
        "effective_width": 320,
        "effective_height": 180,
        "samples": 32,
        "use_denoising": False,
        "use_adaptive_sampling": False,
        "cameras": ["Camera"],
        "active_camera": "Camera",
        "output_format": {
            "file_format": "PNG",
            "color_depth": "8",
            "color_mode": "RGBA",
            "media_type": "IMAGE",
        },
        "external_files": [],
        "missing_files": [],
        "outside_paths": [],
        "text_blocks": [],
        "has_osl_script_nodes": False,
        "uses_osl": False,
        "python_drivers": [],
        "has_linked_libraries": False,
        "compression": "zstd",
        "warnings": [],
    }
    assert {k: r[k] for k in expected} == expected


def test_no_camera_and_eevee(reports: dict[str, Any]) -> None:
    assert reports["no_camera"]["cameras"] == [] and reports["no_camera"]["active_camera"] is None
    assert "the scene has no camera" in reports["no_camera"]["warnings"]
    assert reports["eevee"]["engine"] == "BLENDER_EEVEE"
    assert any("not supported" in w for w in reports["eevee"]["warnings"])


def test_huge_resolution_and_frame_range(reports: dict[str, Any]) -> None:
    big = reports["huge_resolution"]
    assert (big["resolution_x"], big["resolution_y"], big["resolution_percentage"]) == (65536, 65536, 100)
    assert (big["effective_width"], big["effective_height"]) == (65536, 65536)
    frames = reports["huge_frames"]
    assert (frames["frame_start"], frames["frame_end"], frames["frame_count"]) == (1, 1048574, 1048574)


def test_denoising_reported(reports: dict[str, Any]) -> None:
    assert reports["denoise"]["use_denoising"] is True
    assert reports["demo"]["use_denoising"] is False


def test_autorun_text_block_reported_and_never_run(reports: dict[str, Any], blend_factory: BlendFactory) -> None:
    r = reports["autorun_text"]
    assert r["text_blocks"] == [
        {
            "name": "autorun.py",
            "use_module": True,
            "lines": r["text_blocks"][0]["lines"],
            "is_in_memory": True,
            "filepath": None,
        }
    ]
    assert r["registered_text_blocks"] == ["autorun.py"]
    marker = blend_factory.get("autorun_text").marker
    assert marker is not None and not marker.exists()


def test_python_driver_reported_and_never_run(reports: dict[str, Any], blend_factory: BlendFactory) -> None:
    [drv] = reports["python_driver"]["python_drivers"]
    assert drv["datablock"] == "NoiseCube" and drv["data_path"] == "location" and drv["index"] == 2
    assert drv["expression"].startswith("__import__('os').system(")
    assert reports["python_driver"]["scripted_drivers_simple"] == 1  # `1.0 + frame * 0.0` is not Python
    assert not blend_factory.get("python_driver").marker.exists()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "absolute_image",
            {
                ("image", "HostName", "/etc/hostname", "absolute path"),
                ("image", "PrivateImage", "{private}/secret.png", "absolute path"),
            },
        ),
        ("escape_image", {("image", "EscapeImage", "//../../secret.png", "escapes the bundle (..)")}),
        (
            "symlink_image",
            {("image", "SymlinkImage", "//textures/secret.png", "symlink leads outside the bundle")},
        ),
        ("outside_library", {("library", "lib.blend", "{private}/lib.blend", "absolute path")}),
        ("geometry_import", {("geometry_import", "ImportSecret", "{private}/secret.txt", "absolute path")}),
    ],
)
def test_outside_paths(
    reports: dict[str, Any],
    blend_factory: BlendFactory,
    kind: str,
    expected: set,
) -> None:
    private = str(blend_factory.get(kind).private)
    r = reports[kind]
    got = {(o["kind"], o["datablock"], o["raw_path"], o["reason"]) for o in r["outside_paths"]}
    assert got == {(k, d, p.format(private=private), why) for k, d, p, why in expected}
    assert all(not row["inside_bundle"] and not row["exists"] for row in r["external_files"])
    assert r["missing_files"] == []
    assert any("rendering is refused" in w for w in r["warnings"])


def test_linked_library_flag(reports: dict[str, Any]) -> None:
    assert reports["outside_library"]["has_linked_libraries"] is True
    assert reports["outside_library"]["libraries"][0]["name"] == "lib.blend"


def test_osl(reports: dict[str, Any]) -> None:
    r = reports["osl_script"]
    assert r["uses_osl"] is True and r["has_osl_script_nodes"] is True
    [node] = r["osl_script_nodes"]
    assert node["where"] == "Material 'CubeNoise' / node 'StealScript'" and node["script"] == "steal.osl"


def test_compositor_file_output_reported(reports: dict[str, Any]) -> None:
    r = reports["compositor_file_output"]
    assert r["uses_compositing"] is True and len(r["file_output_nodes"]) == 1


def test_packed_image_is_not_an_offence(reports: dict[str, Any]) -> None:
    assert reports["packed_image"]["outside_paths"] == []


def test_missing_file_inside_bundle(blend_factory: BlendFactory, tmp_path: Path) -> None:
    # The escape case's blend, moved two levels down into a bigger bundle: the path now stays inside.
    case = blend_factory.get("escape_image")
    root = tmp_path / "big"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "scene.blend").write_bytes(case.blend.read_bytes())
    r = inspect_scene(root / "a" / "b" / "scene.blend", bundle_root=root)
    assert r["outside_paths"] == []
    assert r["missing_files"] == [
        {
            "kind": "image",
            "datablock": "EscapeImage",
            "raw_path": "//../../secret.png",
            "packed": False,
            "resolved": "secret.png",
            "inside_bundle": True,
            "exists": False,
            "reason": None,
        }
    ]


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("random_bytes", "not a Blender file"),
        ("text_file", "not a Blender file"),
        ("truncated", "corrupt or truncated .blend"),
    ],
)
def test_not_blend_files(
    reports: dict[str, Any],
    blend_factory: BlendFactory,
    kind: str,
    message: str,
) -> None:
    err = reports[kind]
    assert isinstance(err, BlendFileError)
    assert str(err).startswith(message)
    assert str(blend_factory.get(kind).bundle_root) not in str(err)  # names the file, not where it is stored


def test_blend_outside_bundle_is_refused(blend_factory: BlendFactory, tmp_path: Path) -> None:
    case = blend_factory.get("demo")
    with pytest.raises(BlendFileError, match="not inside its bundle"):
        inspect_scene(case.blend, bundle_root=tmp_path)


def test_inspection_timeout(blend_factory: BlendFactory) -> None:
    case = blend_factory.get("demo")
    with pytest.raises(SandboxError) as err:
        inspect_scene(case.blend, bundle_root=case.bundle_root, timeout_s=0.05)
    assert err.value.reason == "timeout"


def test_inspection_memory_limit(blend_factory: BlendFactory) -> None:
    case = blend_factory.get("demo")
    with pytest.raises(SandboxError) as err:
        inspect_scene(case.blend, bundle_root=case.bundle_root, memory_mb=200)
    assert err.value.reason == "memory"
    assert "200 MB" in str(err.value)
