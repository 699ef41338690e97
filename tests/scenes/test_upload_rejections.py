"""Bad uploads are refused with a clear reason before anything is stored: no Scene row, no blob."""

import stat
import zipfile
from io import BytesIO

import pytest
from django.core.exceptions import PermissionDenied

from marketplace.scenes import services
from marketplace.scenes.models import Scene
from marketplace.scenes.validation import SceneRejected
from tests.scenes.conftest import stored_files, upload_file, zip_bytes

BLEND = b"BLENDER-v500" + b"\0" * 100 + b"ENDB" + b"\0" * 20  # passes the container check only


def symlink_zip() -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("scene.blend", BLEND)
        link = zipfile.ZipInfo("textures")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc")
    return buf.getvalue()


def bomb_zip() -> bytes:
    return zip_bytes({"scene.blend": BLEND, "cache/zeros.bin": b"\0" * (20 * 1024 * 1024)})


def rejected(owner, name: str, content: bytes, media) -> str:
    with pytest.raises(SceneRejected) as info:
        services.scene_upload(owner=owner, uploaded_file=upload_file(name, content), name="bad")
    assert not Scene.objects.exists()
    assert stored_files(media) == []
    return info.value.reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("notes.txt", b"just some text", "is not a Blender file: upload a .blend or a .zip"),
        ("scene.blend", b"\x00garbage bytes that are not blender", "not a Blender file"),
        ("scene.blend", BLEND[:40], "corrupt or truncated .blend"),
        ("empty.blend", b"", "the file is empty"),
        ("bundle.zip", b"PK\x03\x04 not really a zip", "corrupt .zip"),
        ("bundle.zip", zip_bytes({"../escape.blend": BLEND}), "'../escape.blend' escapes the bundle (..)"),
        ("bundle.zip", zip_bytes({"scene.blend": BLEND, "/etc/passwd": b"x"}), "'/etc/passwd' is an absolute path"),
        ("bundle.zip", zip_bytes({"scene.blend": BLEND, "C:/Windows/x.png": b"x"}), "names a drive"),
        ("bundle.zip", zip_bytes({"scene.blend": BLEND, "tex\\..\\..\\x.png": b"x"}), "escapes the bundle"),
        ("bundle.zip", symlink_zip(), "'textures' is a symbolic link"),
        ("bundle.zip", bomb_zip(), "'cache/zeros.bin' expands"),
        ("bundle.zip", zip_bytes({"textures/wood.png": b"png"}), "the zip has no .blend at its top level"),
        ("bundle.zip", zip_bytes({"a.blend": BLEND, "b.blend": BLEND}), "several .blend files at its top level"),
        (
            "bundle.zip",
            zip_bytes({"scene.blend": BLEND, "tex": b"x", "tex/a.png": b"x"}),
            "the zip has paths that are both a file and a folder: tex",
        ),
        (
            "bundle.zip",
            zip_bytes({"scene.blend": BLEND, "tex/a.png": b"x", "tex": b"x"}),
            "both a file and a folder: tex",
        ),
        ("bundle.zip", zip_bytes({"scene.blend": BLEND, "scene.blend/": b""}), "both a file and a folder: scene.blend"),
        ("bundle.zip", zip_bytes({"scene.blend": b"not a blend"}), "scene.blend in the zip is not a Blender file"),
    ],
)
def test_it_refuses_bad_uploads_and_stores_nothing(artist, media, name, content, expected):
    assert expected in rejected(artist, name, content, media)


@pytest.mark.django_db
def test_it_refuses_a_zip_bomb_by_its_ratio_with_a_clear_message(artist, media):
    reason = rejected(artist, "bundle.zip", bomb_zip(), media)
    assert "this looks like a zip bomb" in reason and "(limit 100)" in reason


@pytest.mark.django_db
def test_it_refuses_a_zip_that_expands_over_the_total_cap(artist, media, settings):
    settings.SCENE_ZIP_MAX_UNCOMPRESSED_BYTES = 1000
    reason = rejected(artist, "bundle.zip", zip_bytes({"scene.blend": BLEND, "tex.png": b"x" * 2000}), media)
    assert "the zip expands to" in reason and "over the limit" in reason


@pytest.mark.django_db
def test_it_refuses_more_files_than_the_limit(artist, media, settings):
    settings.SCENE_ZIP_MAX_FILES = 5
    entries = {"scene.blend": BLEND, **{f"tex/{i}.png": b"x" for i in range(5)}}
    assert "holds 6 entries, more than the limit of 5" in rejected(artist, "bundle.zip", zip_bytes(entries), media)


@pytest.mark.django_db
def test_it_refuses_a_file_over_the_size_limit(artist, media, settings):
    settings.SCENE_MAX_UPLOAD_BYTES = 100
    assert "over the upload limit of" in rejected(artist, "scene.blend", BLEND, media)


@pytest.mark.django_db
def test_the_size_limit_stops_reading_an_upload_whose_size_is_unknown(artist, media, settings):
    settings.SCENE_MAX_UPLOAD_BYTES = 100
    upload = upload_file("scene.blend", BLEND)
    upload.size = None
    with pytest.raises(SceneRejected, match="over the upload limit"):
        services.scene_upload(owner=artist, uploaded_file=upload)
    assert not Scene.objects.exists() and stored_files(media) == []


@pytest.mark.django_db
def test_a_provider_cannot_upload_scenes(provider, media):
    with pytest.raises(PermissionDenied):
        services.scene_upload(owner=provider, uploaded_file=upload_file("scene.blend", BLEND))
    assert not Scene.objects.exists() and stored_files(media) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("entries", "blend_path"),
    [
        ({"scene.blend": BLEND, "textures/wood.png": b"png"}, "scene.blend"),
        (
            {"project/shot.blend": BLEND, "project/tex/wood.png": b"png", "__MACOSX/project/._shot.blend": b"x"},
            "project/shot.blend",
        ),
        ({"main.blend": BLEND, "other.blend": BLEND, "libs/lib.blend": BLEND}, "main.blend"),
    ],
)
def test_it_finds_the_one_top_level_blend_of_a_zip(artist, entries, blend_path, media):
    scene = services.scene_upload(
        owner=artist, uploaded_file=upload_file("bundle.zip", zip_bytes(entries)), enqueue=False
    )
    assert (scene.kind, scene.blend_path, scene.status) == ("zip", blend_path, Scene.Status.INSPECTING)
    assert stored_files(media) == [media / scene.storage_key]
