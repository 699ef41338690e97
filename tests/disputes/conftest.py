import pytest


@pytest.fixture
def media(settings, tmp_path):
    """Stored blobs go to a temporary directory for this test."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path
