"""Real bpy inspection (sandboxed subprocess) of the demo scene and of each bad scene, through the upload service."""

import pytest

from marketplace.scenes.models import Scene
from marketplace.scenes.validation import SceneRejected
from tests.scenes.conftest import stored_files

pytest_plugins = ["tests.fixtures.blend_fixtures"]
pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CASES = (
    "no_camera",
    "eevee",
    "huge_resolution",
    "huge_frames",
    "absolute_image",
    "escape_image",
    "outside_library",
    "osl_script",
    "python_driver",
    "autorun_text",
    "denoise",
    "truncated",
    "random_bytes",
    "geometry_import",
    "symlink_image",
    "compositor_file_output",
    "packed_image",
)


@pytest.fixture(scope="module", autouse=True)
def _prebuild(blend_factory):
    blend_factory.prebuild(CASES)  # one bpy subprocess for all of them


def refused(upload, artist, blend_factory, kind: str, media) -> Scene:
    scene = upload(artist, blend_factory.get(kind).blend)
    assert scene.status == Scene.Status.REFUSED
    assert scene.inspected_at is not None
    assert stored_files(media) == [media / scene.storage_key]  # kept, with the reason, for the artist to see
    assert "calibration" not in scene.report
    return scene


def test_the_demo_scene_is_ready_with_its_exact_settings_and_a_calibration(upload, artist, tiny_demo, media):
    scene = upload(artist, tiny_demo)
    assert scene.status == Scene.Status.READY, scene.refusal
    assert (scene.kind, scene.blend_path, scene.refusal, scene.warnings) == ("blend", "demo.blend", "", [])
    r = scene.report
    assert (r["engine"], r["frame_start"], r["frame_end"], r["frame_step"], r["frame_count"]) == ("CYCLES", 1, 6, 1, 6)
    assert (r["resolution_x"], r["resolution_y"], r["resolution_percentage"]) == (64, 36, 100)
    assert (r["samples"], r["use_denoising"], r["use_adaptive_sampling"]) == (8, False, False)
    assert r["cameras"] == ["Camera"] and r["active_camera"] == "Camera" and scene.active_camera == "Camera"
    assert r["blender_version_saved"] == "5.0" and r["missing_files"] == [] and r["outside_paths"] == []
    cal = r["calibration"]
    # scenes.calibration's protocol at the middle frame: a main size (25 % a side, at least 32 px) and half of it,
    # both doubled (up to the 64x36 frame) while their times differ by less than noise (issue 11: this changed)
    assert {k: cal[k] for k in ("samples", "frame", "device")} == {"samples": 8, "frame": 3, "device": "CPU"}
    assert (cal["width"], cal["height"]) in ((32, 32), (64, 36))
    assert (cal["small"]["width"], cal["small"]["height"]) == {32: (16, 16), 64: (32, 32)}[cal["width"]]
    assert 0 < cal["seconds"] < 30 and cal["small"]["seconds"] > 0 and cal["load_seconds"] >= 0
    assert stored_files(media) == [media / scene.storage_key]


def test_inspecting_twice_changes_nothing(upload, artist, tiny_demo):
    from marketplace.scenes.services import scene_inspect

    scene = upload(artist, tiny_demo)
    again = scene_inspect(scene_id=scene.pk)
    assert (again.status, again.report, again.inspected_at) == (scene.status, scene.report, scene.inspected_at)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("no_camera", "the scene has no camera"),
        ("eevee", "unsupported engine BLENDER_EEVEE: switch the render engine to Cycles"),
        ("huge_resolution", "effective resolution 65536x65536 (resolution x 100 %) is over the limit of 8192 px"),
        ("huge_frames", "1048574 frames (1-1048574 step 1) is over the limit of 10000 frames"),
    ],
)
def test_it_refuses_scenes_it_cannot_render(upload, artist, blend_factory, kind, expected, media):
    assert expected in refused(upload, artist, blend_factory, kind, media).refusal


def test_it_refuses_images_outside_the_upload_listing_each_path(upload, artist, blend_factory, media):
    case = blend_factory.get("absolute_image")
    scene = refused(upload, artist, blend_factory, "absolute_image", media)
    assert "the scene reads files outside its upload" in scene.refusal
    assert f"{case.private / 'secret.png'} (absolute path)" in scene.refusal
    assert "/etc/hostname (absolute path)" in scene.refusal


def test_it_refuses_an_escape_with_dotdot(upload, artist, blend_factory, media):
    scene = refused(upload, artist, blend_factory, "escape_image", media)
    assert "image 'EscapeImage': //../../secret.png (escapes the bundle (..))" in scene.refusal


def test_it_refuses_a_library_linked_from_outside(upload, artist, blend_factory, media):
    case = blend_factory.get("outside_library")
    scene = refused(upload, artist, blend_factory, "outside_library", media)
    assert f"library 'lib.blend': {case.private / 'lib.blend'} (absolute path)" in scene.refusal


def test_it_refuses_a_geometry_import_of_a_file_outside_the_upload(upload, artist, blend_factory, media):
    case = blend_factory.get("geometry_import")
    scene = refused(upload, artist, blend_factory, "geometry_import", media)
    assert f"geometry_import 'ImportSecret': {case.private / 'secret.txt'} (absolute path)" in scene.refusal


def test_a_file_missing_from_the_upload_is_a_warning(upload, artist, blend_factory):
    # Uploaded alone, this .blend's `//textures/secret.png` stays inside the bundle but is not in it.
    scene = upload(artist, blend_factory.get("symlink_image").blend)
    assert scene.status == Scene.Status.READY, scene.refusal
    assert scene.warnings == ["missing from the upload: image 'SymlinkImage' (//textures/secret.png)"]
    assert [m["raw_path"] for m in scene.report["missing_files"]] == ["//textures/secret.png"]


def test_a_compositor_file_output_is_ignored_and_writes_nothing(upload, artist, blend_factory):
    case = blend_factory.get("compositor_file_output")
    scene = upload(artist, case.blend)
    # Calibrated (a real render) without the compositor: the File Output node never wrote its marker.
    assert scene.status == Scene.Status.READY and "calibration" in scene.report
    assert "compositing is ignored: frames are the raw render" in scene.warnings
    assert not case.marker.exists()


def test_a_packed_image_is_accepted_without_warnings(upload, artist, blend_factory):
    scene = upload(artist, blend_factory.get("packed_image").blend)
    assert (scene.status, scene.refusal, scene.warnings) == (Scene.Status.READY, "", [])


def test_it_refuses_osl_script_nodes(upload, artist, blend_factory, media):
    scene = refused(upload, artist, blend_factory, "osl_script", media)
    assert "OSL script nodes are not allowed" in scene.refusal and "'StealScript'" in scene.refusal


def test_it_refuses_python_drivers_listing_them_and_never_runs_them(upload, artist, blend_factory, media):
    case = blend_factory.get("python_driver")
    scene = refused(upload, artist, blend_factory, "python_driver", media)
    assert "Python driver expressions are not allowed" in scene.refusal
    assert "NoiseCube.location[2] = \"__import__('os').system(" in scene.refusal
    assert not case.marker.exists()


def test_an_autorun_text_block_never_runs(upload, artist, blend_factory):
    case = blend_factory.get("autorun_text")
    scene = upload(artist, case.blend)
    # Inspected and even calibrated (a real render): the block registered to run on load never ran.
    assert scene.status == Scene.Status.READY and "calibration" in scene.report
    assert "text block 'autorun.py' is registered to run on load: it was not run and never will be" in scene.warnings
    assert not case.marker.exists()


def test_denoising_is_a_warning_not_a_refusal(upload, artist, blend_factory):
    scene = upload(artist, blend_factory.get("denoise").blend)
    assert scene.status == Scene.Status.READY
    assert any(w.startswith("denoising is on") for w in scene.warnings)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("truncated", "corrupt or truncated .blend"),
        ("random_bytes", "not a Blender file"),
    ],
)
def test_broken_blend_files_are_refused_before_storage(artist, blend_factory, kind, expected, upload, media):
    with pytest.raises(SceneRejected, match=expected):
        upload(artist, blend_factory.get(kind).blend)
    assert not Scene.objects.exists() and stored_files(media) == []
