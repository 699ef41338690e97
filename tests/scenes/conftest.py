import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from marketplace.scenes import services
from marketplace.scenes.models import Scene


@pytest.fixture(autouse=True)
def media(settings, tmp_path) -> Path:
    """Stored blobs go to a temporary directory for each test."""
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def upload_file(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


@pytest.fixture
def upload(django_capture_on_commit_callbacks):
    """Upload bytes (or a file) as a user and run the queued inspection (Celery runs eagerly in tests)."""

    def do(owner, content: bytes | Path, *, name: str = "scene.blend") -> Scene:
        if isinstance(content, Path):
            name, content = content.name if name == "scene.blend" else name, content.read_bytes()
        with django_capture_on_commit_callbacks(execute=True):
            scene = services.scene_upload(owner=owner, uploaded_file=upload_file(name, content), name="")
        scene.refresh_from_db()
        return scene

    return do


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


TINY_DEMO = {"frames": 6, "resolution": (64, 36), "samples": 8}


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """The generated demo scene, tiny: 6 frames of 64x36 at 8 samples."""
    from workers.blend import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("tiny_demo") / "demo.blend", **TINY_DEMO)
