"""Frozen results are content-addressed: reports of identical bytes at once share one copy, and a damaged copy
is replaced by the bytes the report holds."""

import hashlib
import io

import pytest
from django.core.files.storage import default_storage

from marketplace import blobs

DATA = b"\x89PNG the same blank frame from two nodes"


@pytest.fixture
def storage_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


def stored_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_report_freezing_the_bytes_another_report_freezes_at_that_moment_gets_the_same_copy(storage_dir, monkeypatch):
    """The other report's write lands between this one's check and its own write (seen with 16 processes
    reporting identical frames: the storage renamed the second write, and that report failed with a 500)."""
    key = blobs.frozen_key(sha256=hashlib.sha256(DATA).hexdigest(), ext="png")
    real_save, saves = default_storage.save, []

    def save_after_the_other_report(name, content, **kw):
        if not saves:
            saves.append(name)
            real_save(key, io.BytesIO(DATA))  # the other report, a moment earlier
        return real_save(name, content, **kw)

    monkeypatch.setattr(default_storage, "save", save_after_the_other_report)
    assert blobs.blob_freeze(data=DATA, ext="png") == (key, hashlib.sha256(DATA).hexdigest())
    assert saves == [key] and stored_files(storage_dir) == [key]  # no renamed second copy left behind
    assert (storage_dir / key).read_bytes() == DATA


def test_a_damaged_frozen_copy_is_replaced_by_the_bytes_the_report_holds(storage_dir):
    key, sha = blobs.blob_freeze(data=DATA, ext="png")
    (storage_dir / key).write_bytes(b"truncated")
    assert blobs.blob_freeze(data=DATA, ext="png") == (key, sha)
    assert (storage_dir / key).read_bytes() == DATA and stored_files(storage_dir) == [key]
