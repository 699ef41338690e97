"""Bundles sent file by file: which digests are missing, upload one file, assemble; every upload check still holds."""

import hashlib
import zipfile

import pytest
from django.urls import reverse

from marketplace import blobs
from marketplace.scenes import bundles
from marketplace.scenes.models import Scene, SceneFile
from tests.fixtures.api import bearer
from tests.scenes.conftest import stored_files

pytestmark = pytest.mark.django_db

BLEND = b"BLENDER-v500" + b"\0" * 100 + b"ENDB" + b"\0" * 20
TEXTURE = b"\x89PNG not really, but bytes" * 10


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def missing(api, *datas: bytes) -> list[str]:
    response = api.post(reverse("api-scene-files-missing"), {"digests": [sha(d) for d in datas]}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["missing"]


def put(api, data: bytes, digest: str | None = None):
    return api.put(
        reverse("api-scene-file", args=[digest or sha(data)]), data=data, content_type="application/octet-stream"
    )


def bundle(api, files: dict[str, bytes], name: str = "shot"):
    manifest = [{"path": path, "sha256": sha(data)} for path, data in files.items()]
    return api.post(reverse("api-scene-bundle"), {"files": manifest, "name": name}, format="json")


@pytest.fixture(autouse=True)
def no_inspection(monkeypatch):
    monkeypatch.setattr("marketplace.scenes.tasks.scene_inspect_task.delay", lambda scene_id: None)


def test_it_lists_missing_digests_then_assembles_the_uploaded_files_into_a_checked_zip(artist, media):
    api = bearer(artist)
    assert missing(api, BLEND, TEXTURE) == [sha(BLEND), sha(TEXTURE)]
    assert put(api, BLEND).status_code == 201
    assert missing(api, BLEND, TEXTURE) == [sha(TEXTURE)]
    assert put(api, TEXTURE).json() == {"sha256": sha(TEXTURE), "size": len(TEXTURE)}
    assert missing(api, BLEND, TEXTURE) == []

    response = bundle(api, {"scene.blend": BLEND, "textures/wood.png": TEXTURE})
    assert response.status_code == 201, response.content
    scene = Scene.objects.get(pk=response.json()["id"])
    assert (scene.kind, scene.blend_path, scene.name, scene.status) == ("zip", "scene.blend", "shot", "inspecting")
    with blobs.blob_open(scene.storage_key) as f, zipfile.ZipFile(f) as zf:
        assert zf.namelist() == ["scene.blend", "textures/wood.png"]
        assert zf.read("textures/wood.png") == TEXTURE


def test_the_same_files_assemble_into_the_same_bytes(artist, media):
    api = bearer(artist)
    put(api, BLEND), put(api, TEXTURE)
    first = bundle(api, {"scene.blend": BLEND, "t/a.png": TEXTURE}).json()
    second = bundle(api, {"t/a.png": TEXTURE, "scene.blend": BLEND}).json()
    assert first["sha256"] == second["sha256"] and first["id"] != second["id"]


def test_a_file_whose_bytes_hash_otherwise_is_refused_and_not_kept(artist, media):
    api = bearer(artist)
    response = put(api, TEXTURE, digest=sha(BLEND))
    assert response.status_code == 400
    assert response.json()["detail"] == f"the file's SHA-256 is {sha(TEXTURE)}, not the {sha(BLEND)} it was sent as"
    assert not SceneFile.objects.exists() and stored_files(media) == []


def test_a_digest_that_is_not_hex_is_refused(artist):
    api = bearer(artist)
    response = put(api, BLEND, digest="NOT-HEX")
    assert response.status_code == 400 and "is not a SHA-256 digest" in response.json()["detail"]
    response = api.post(reverse("api-scene-files-missing"), {"digests": ["xyz"]}, format="json")
    assert response.status_code == 400 and "is not a SHA-256 digest" in response.json()["detail"]


def test_another_artists_upload_does_not_count_as_yours(artist, outsider, media):
    put(bearer(artist), TEXTURE)
    eve = bearer(outsider)
    assert missing(eve, TEXTURE) == [sha(TEXTURE)]  # the digest alone lends nothing
    put(eve, BLEND)
    response = bundle(eve, {"scene.blend": BLEND, "t.png": TEXTURE})
    assert response.status_code == 409
    assert response.json()["missing"] == [sha(TEXTURE)]
    assert "have not been uploaded yet" in response.json()["detail"]
    assert not Scene.objects.exists()


def test_the_assembled_bundle_gets_the_checks_of_an_uploaded_zip(artist, media):
    api = bearer(artist)
    put(api, BLEND), put(api, TEXTURE)
    escape = bundle(api, {"scene.blend": BLEND, "../outside.png": TEXTURE})
    assert escape.status_code == 400 and "escapes the bundle (..)" in escape.json()["detail"]
    absolute = bundle(api, {"scene.blend": BLEND, "/etc/x.png": TEXTURE})
    assert absolute.status_code == 400 and "is an absolute path" in absolute.json()["detail"]
    no_blend = bundle(api, {"a.png": TEXTURE})
    assert no_blend.status_code == 400 and "has no .blend at its top level" in no_blend.json()["detail"]
    two = bundle(api, {"a.blend": BLEND, "b.blend": BLEND})
    assert two.status_code == 400 and "several .blend files" in two.json()["detail"]
    fake = bundle(api, {"scene.blend": TEXTURE})
    assert fake.status_code == 400 and "is not a Blender file" in fake.json()["detail"]
    assert not Scene.objects.exists()


def test_the_upload_limits_hold_for_files_and_bundles(artist, media, settings):
    api = bearer(artist)
    put(api, BLEND), put(api, TEXTURE)
    settings.SCENE_MAX_UPLOAD_BYTES = len(BLEND) + 10
    assert put(api, b"x" * (len(BLEND) + 11)).status_code == 413
    response = bundle(api, {"scene.blend": BLEND, "t.png": TEXTURE})
    assert response.status_code == 400 and "over the upload limit" in response.json()["detail"]
    settings.SCENE_ZIP_MAX_FILES = 1
    response = bundle(api, {"scene.blend": BLEND, "t.png": TEXTURE})
    assert response.status_code == 400 and "more than the limit of 1" in response.json()["detail"]


def test_a_provider_cannot_upload_bundle_files(provider):
    api = bearer(provider)
    assert put(api, BLEND).status_code == 403
    assert api.post(reverse("api-scene-files-missing"), {"digests": []}, format="json").status_code == 403
    assert not SceneFile.objects.exists()


def test_a_manifest_listing_a_path_twice_is_refused():
    with pytest.raises(bundles.SceneRejected, match="listed twice"):
        bundles.check_manifest([{"path": "a.blend", "sha256": sha(BLEND)}, {"path": "a.blend", "sha256": sha(BLEND)}])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_uploads_of_one_file_store_it_once(artist, media):
    from django.core.files.storage import default_storage

    from marketplace.scenes import services
    from tests.fixtures.race import race

    results = race(lambda i: services.scene_file_put(owner=artist, sha256=sha(TEXTURE), chunks=[TEXTURE]), 6)
    assert all(isinstance(r, SceneFile) for r in results), results
    assert SceneFile.objects.get().size == len(TEXTURE)
    key = SceneFile.objects.get().storage_key
    assert [p.name for p in stored_files(media)] == [sha(TEXTURE)]
    with default_storage.open(key) as f:
        assert f.read() == TEXTURE
