"""An inspection that cannot finish never leaves a scene "inspecting" forever, and leaves no temp files behind."""

import tempfile
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from celery.exceptions import Retry

from marketplace import blobs
from marketplace.scenes import services
from marketplace.scenes.models import Scene
from marketplace.scenes.tasks import MAX_RETRIES, scene_inspect_task
from tests.scenes.conftest import upload_file

pytestmark = pytest.mark.django_db

BLEND = b"BLENDER-v500" + b"\0" * 100 + b"ENDB" + b"\0" * 20
TEXTURE = b"a texture that will be damaged in the archive"


def zip_with_damaged_texture() -> bytes:
    """A zip whose central directory is sound (so the upload checks pass) but whose texture fails its CRC."""
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("scene.blend", BLEND)
        zf.writestr("textures/wood.png", TEXTURE)
    raw = bytearray(buf.getvalue())
    raw[raw.find(TEXTURE)] ^= 0xFF
    return bytes(raw)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Every temp dir the upload and the inspection make (their own and the bpy sandbox's) lands here."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def queued(owner, name: str, content: bytes) -> Scene:
    return services.scene_upload(owner=owner, uploaded_file=upload_file(name, content), enqueue=False)


def test_a_zip_with_damaged_member_data_is_refused_not_left_inspecting(artist, media, private_tmp):
    scene = queued(artist, "bundle.zip", zip_with_damaged_texture())
    scene_inspect_task.delay(scene.pk)
    scene.refresh_from_db()
    assert scene.status == Scene.Status.REFUSED
    assert scene.refusal == "corrupt .zip: Bad CRC-32 for file 'textures/wood.png'"
    assert list(private_tmp.iterdir()) == []


def test_storage_errors_are_retried_up_to_the_cap_then_the_scene_is_refused(artist, media, monkeypatch):
    scene = queued(artist, "scene.blend", BLEND)
    attempts = []

    def storage_down(key):
        attempts.append(key)
        raise ConnectionError("storage is unreachable")

    monkeypatch.setattr(blobs, "blob_open", storage_down)
    for retries in range(MAX_RETRIES):  # each delivery as a worker would run it after the previous retry
        with pytest.raises(Retry):
            scene_inspect_task.apply(args=[scene.pk], retries=retries)
        assert Scene.objects.get(pk=scene.pk).status == Scene.Status.INSPECTING
    scene_inspect_task.apply(args=[scene.pk], retries=MAX_RETRIES)
    scene.refresh_from_db()
    assert len(attempts) == MAX_RETRIES + 1
    assert scene.status == Scene.Status.REFUSED
    assert scene.refusal == (
        "inspection failed: ConnectionError: storage is unreachable; please upload the scene again"
    )


def test_an_unexpected_error_refuses_the_scene_instead_of_leaving_it_inspecting(artist, media, monkeypatch):
    scene = queued(artist, "scene.blend", BLEND)

    def broken(**kwargs):
        raise KeyError("engine")

    monkeypatch.setattr("marketplace.scenes.services.inspect_upload", broken)
    with pytest.raises(KeyError):  # still raised, so the worker logs the traceback
        scene_inspect_task.delay(scene.pk)
    scene.refresh_from_db()
    assert (scene.status, scene.refusal) == (
        Scene.Status.REFUSED,
        "inspection failed: internal error; please upload the scene again",
    )


@pytest.mark.slow
def test_a_real_inspection_and_calibration_leave_no_temp_files(upload, artist, tiny_demo, private_tmp):
    scene = upload(artist, tiny_demo)
    assert scene.status == Scene.Status.READY and "calibration" in scene.report
    assert list(private_tmp.iterdir()) == []
