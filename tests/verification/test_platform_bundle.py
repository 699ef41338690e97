"""The platform verifier's scene cache: the same bytes uploaded under two names are two bundles."""

import hashlib
import io

from marketplace import blobs
from marketplace.verification import conf, platform

BLEND = b"BLENDER17-01v0500" + b"\x00" * 100 + b"ENDB" + b"\x00" * 28


def test_same_bytes_under_two_names_are_two_bundles(settings, tmp_path, monkeypatch):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    monkeypatch.setattr(conf, "WORK_DIR", tmp_path / "work")
    sha = hashlib.sha256(BLEND).hexdigest()
    blobs.blob_put(key=f"scenes/{sha}.blend", fileobj=io.BytesIO(BLEND))
    first, first_root = platform.scene_bundle(
        sha256=sha, kind="blend", storage_key=f"scenes/{sha}.blend", blend_path="a.blend"
    )
    # Keyed by hash alone, this raised "the bundle has no 'x.blend'".
    second, second_root = platform.scene_bundle(
        sha256=sha, kind="blend", storage_key=f"scenes/{sha}.blend", blend_path="x.blend"
    )
    assert (first.name, second.name) == ("a.blend", "x.blend") and first_root != second_root
    assert first.read_bytes() == second.read_bytes() == BLEND
