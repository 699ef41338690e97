"""Files in storage (local disk or S3) and short-lived signed URLs to them.

Agents never get storage credentials: they get a URL that allows one method on one key for a few minutes.
With S3 the URL is a presigned S3 URL; with local storage it is this server's /blobs/<signed token>.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import IO

from django.conf import settings
from django.core import signing
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.urls import reverse

from marketplace.keys import derived_key

SALT = "marketplace.blobs"
KEY_PURPOSE = "blobs"  # local blob tokens are signed with their own key, not SECRET_KEY itself (marketplace/keys.py)
CHUNK = 1024 * 1024


def is_s3() -> bool:
    return settings.STORAGES["default"]["BACKEND"].startswith("storages.")


def blob_put(*, key: str, fileobj: IO[bytes]) -> str:
    """Store under exactly `key` (content-addressed keys never change content, so overwrite is harmless)."""
    if default_storage.exists(key):
        default_storage.delete(key)
    saved = default_storage.save(key, File(fileobj))
    if saved != key:  # storages rename on collision; content addressing depends on the exact key
        raise RuntimeError(f"storage saved {key!r} as {saved!r}")
    return saved


def blob_exists(key: str) -> bool:
    return default_storage.exists(key)


def blob_open(key: str) -> IO[bytes]:
    return default_storage.open(key, "rb")


def blob_delete(key: str) -> None:
    if key and default_storage.exists(key):
        default_storage.delete(key)


def blob_chunks(key: str) -> Iterator[bytes]:
    with blob_open(key) as f:
        while chunk := f.read(CHUNK):
            yield chunk


def sha256_of(fileobj: IO[bytes]) -> str:
    h = hashlib.sha256()
    fileobj.seek(0)
    while chunk := fileobj.read(CHUNK):
        h.update(chunk)
    fileobj.seek(0)
    return h.hexdigest()


def signed_url(*, key: str, method: str = "GET", expires_s: int = 600, max_bytes: int = 0) -> str:
    """A URL allowing `method` (GET or PUT) on `key` for `expires_s` seconds."""
    if method not in ("GET", "PUT"):
        raise ValueError(method)
    if is_s3():
        client = default_storage.connection.meta.client
        full_key = default_storage._normalize_name(key)
        op = "get_object" if method == "GET" else "put_object"
        return client.generate_presigned_url(
            op, Params={"Bucket": default_storage.bucket_name, "Key": full_key}, ExpiresIn=expires_s
        )
    token = signing.dumps({"k": key, "m": method, "x": int(max_bytes), "e": expires_s}, key=_signing_key(),
                          salt=SALT, compress=True)
    return settings.PUBLIC_URL.rstrip("/") + reverse("blob", args=[token])


def _signing_key() -> str:
    return derived_key(KEY_PURPOSE, secret=settings.SECRET_KEY)


def _fallback_keys() -> list[str]:
    return [derived_key(KEY_PURPOSE, secret=old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", [])]


class BadBlobToken(Exception):
    pass


def signed_token_read(token: str, *, method: str) -> tuple[str, int]:
    """(key, max_bytes) of a valid, unexpired local token for `method`."""
    try:
        keys = {"key": _signing_key(), "fallback_keys": _fallback_keys(), "salt": SALT}
        payload = signing.loads(token, max_age=None, **keys)
        signing.loads(token, max_age=payload["e"], **keys)
    except signing.SignatureExpired as exc:
        raise BadBlobToken("this link has expired") from exc
    except (signing.BadSignature, KeyError, TypeError) as exc:
        raise BadBlobToken("invalid link") from exc
    if payload["m"] != method:
        raise BadBlobToken(f"this link does not allow {method}")
    return payload["k"], payload["x"]
