"""The S3 path against a real moto server over HTTP: stored under the SHA-256, deduplicated, presigned GET."""

import hashlib

import pytest
import requests

from marketplace import blobs
from marketplace.scenes import services
from marketplace.scenes.models import Scene
from marketplace.scenes.validation import SceneRejected
from tests.fixtures.storage import BUCKET, PREFIX
from tests.scenes.conftest import upload_file

BLEND = b"BLENDER-v500" + b"\0" * 100 + b"ENDB" + b"\0" * 20


def keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


@pytest.mark.django_db
def test_uploads_are_stored_in_s3_by_sha_once_and_served_by_presigned_url(s3, artist, outsider, monkeypatch):
    puts = []
    real_put = blobs.blob_put
    monkeypatch.setattr(blobs, "blob_put", lambda **kw: puts.append(kw["key"]) or real_put(**kw))
    sha = hashlib.sha256(BLEND).hexdigest()
    first = services.scene_upload(owner=artist, uploaded_file=upload_file("a.blend", BLEND), enqueue=False)
    assert blobs.is_s3() and first.sha256 == sha
    assert keys(s3) == [f"{PREFIX}/scenes/{sha[:2]}/{sha}.blend"]

    second = services.scene_upload(owner=outsider, uploaded_file=upload_file("b.blend", BLEND), enqueue=False)
    assert second.storage_key == first.storage_key and Scene.objects.count() == 2
    assert keys(s3) == [f"{PREFIX}/{first.storage_key}"]
    assert puts == [first.storage_key]  # the second upload found the blob and did not send it again

    url = blobs.signed_url(key=first.storage_key)
    assert url.startswith(s3.meta.endpoint_url) and "Signature" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == BLEND


@pytest.mark.django_db
def test_a_rejected_upload_puts_nothing_in_s3(s3, artist):
    with pytest.raises(SceneRejected, match="not a Blender file"):
        services.scene_upload(owner=artist, uploaded_file=upload_file("x.blend", b"nope"), enqueue=False)
    assert keys(s3) == [] and not Scene.objects.exists()
