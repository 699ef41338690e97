"""Local blob URL tokens are signed with a key derived per deployment (SECRET_KEY) and purpose ("blobs")."""

import pytest
from django.core import signing

from marketplace import blobs
from marketplace.keys import derived_key


def _token(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


@pytest.fixture
def local_storage(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    settings.SECRET_KEY = "k" * 10 + "deployment-one-0123456789abcdefghijklmnopqrstuvwxyz"


def test_a_signed_url_round_trips(local_storage):
    token = _token(blobs.signed_url(key="results/1.png", method="PUT", max_bytes=1000))
    assert blobs.signed_token_read(token, method="PUT") == ("results/1.png", 1000, None)
    with pytest.raises(blobs.BadBlobToken, match="does not allow GET"):
        blobs.signed_token_read(token, method="GET")


def test_a_token_signed_with_the_bare_secret_key_is_refused(local_storage):
    forged = signing.dumps({"k": "results/1.png", "m": "PUT", "x": 0, "e": 600}, salt=blobs.SALT, compress=True)
    with pytest.raises(blobs.BadBlobToken, match="invalid link"):
        blobs.signed_token_read(forged, method="PUT")


def test_a_token_of_another_purpose_or_deployment_is_refused(local_storage, settings):
    payload = {"k": "results/1.png", "m": "GET", "x": 0, "e": 600}
    other_purpose = signing.dumps(payload, key=derived_key("sessions", secret=settings.SECRET_KEY), salt=blobs.SALT)
    with pytest.raises(blobs.BadBlobToken):
        blobs.signed_token_read(other_purpose, method="GET")
    token = _token(blobs.signed_url(key="results/1.png"))
    settings.SECRET_KEY = "another-deployment-" + "z" * 40
    with pytest.raises(blobs.BadBlobToken):
        blobs.signed_token_read(token, method="GET")


def test_rotating_the_secret_key_keeps_live_urls_valid_through_the_fallbacks(local_storage, settings):
    old = settings.SECRET_KEY
    token = _token(blobs.signed_url(key="results/1.png"))
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "rotated-" + "r" * 50, [old]
    assert blobs.signed_token_read(token, method="GET")[0] == "results/1.png"


def test_derived_keys_differ_per_purpose_and_from_the_secret():
    secret = "s" * 60
    keys = {derived_key(p, secret=secret) for p in ("blobs", "sessions", "other")}
    assert len(keys) == 3 and secret not in keys
    assert derived_key("blobs", secret=secret) == derived_key("blobs", secret=secret)  # stable across processes
