"""Files in storage (local disk or S3) and short-lived signed URLs to them.

Agents never get storage credentials: they get a URL that allows one method on one key for a few minutes.
With S3 the URL is a presigned S3 URL; with local storage it is this server's /blobs/<signed token>.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core import signing
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.urls import reverse

from marketplace.keys import derived_key

SALT = "marketplace.blobs"
KEY_PURPOSE = "blobs"  # local blob tokens are signed with their own key, not SECRET_KEY itself (marketplace/keys.py)
CHUNK = 1024 * 1024
S3_DELETE_KEYS = 1000  # the most keys one DeleteObjects request takes
# Frozen results: stored by the server under their own SHA-256, never the target of any signed URL.
FROZEN_PREFIX = "results/sha256/"
_FROZEN = re.compile(r"^results/sha256/([0-9a-f]{64})\.[a-z0-9]+$")
log = logging.getLogger("blobs")


def is_s3() -> bool:
    return settings.STORAGES["default"]["BACKEND"].startswith("storages.")


def _s3_object(key: str) -> tuple[Any, dict[str, str]]:
    """The S3 client of the default storage and the Bucket and Key parameters that name `key` in it."""
    return default_storage.connection.meta.client, {
        "Bucket": default_storage.bucket_name,
        "Key": default_storage._normalize_name(key),
    }


def blob_put(*, key: str, fileobj: IO[bytes]) -> str:
    """Store under exactly `key` (content-addressed keys never change content, so overwrite is harmless)."""
    if default_storage.exists(key):
        default_storage.delete(key)
    saved = default_storage.save(key, File(fileobj))
    if saved != key:  # storages rename on collision; content addressing depends on the exact key
        raise RuntimeError(f"storage saved {key!r} as {saved!r}")
    return saved


def blob_put_new(*, key: str, fileobj: IO[bytes]) -> bool:
    """Store under `key` only if nothing is there yet (write-once); False when the key is taken."""
    if default_storage.exists(key):
        return False
    saved = default_storage.save(key, File(fileobj))  # a racing writer gets a renamed copy: drop it
    if saved != key:
        default_storage.delete(saved)
        return False
    return True


def frozen_key(*, sha256: str, ext: str) -> str:
    return f"{FROZEN_PREFIX}{sha256}.{ext}"


def digest_of_key(key: str) -> str:
    """The SHA-256 a frozen key names, or "" for any other key."""
    match = _FROZEN.match(key or "")
    return match.group(1) if match else ""


def blob_put_named(*, key: str, data: bytes, sha256: str = "") -> None:
    """Store `data` under `key`, a name its bytes determine (their digest is in it): a copy already there holds
    the same bytes. On S3 one PUT (overwriting such a copy changes nothing), where asking first cost a HEAD on
    every report, with the bytes' SHA-256 checksum: S3 refuses the PUT unless the bytes arrive as they are, and
    keeps the digest with the object, so a check of it asks a HEAD instead of reading it all
    (`blob_digest_check`). On a local disk written only when absent (the storage would rename a second copy).
    `sha256`: the bytes' digest, when the caller has it already."""
    if not is_s3():
        blob_put_new(key=key, fileobj=io.BytesIO(data))
        return
    client, named = _s3_object(key)
    client.put_object(
        **named,
        Body=data,
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256 or hashlib.sha256(data).hexdigest())).decode(),
        ContentType=mimetypes.guess_type(key)[0] or "application/octet-stream",
    )


def blob_freeze(*, data: bytes, ext: str, source_key: str = "", source_etag: str = "") -> tuple[str, str]:
    """Store `data` under its own SHA-256 (write-once, outside any key an agent may write); (key, sha256).
    Reports of the same bytes at once (blank frames, a still) share the one copy, whichever stored it. On S3 one
    request: the same bytes again, or our bytes over a damaged copy.

    `source_key`, `source_etag`: where `data` was read from, and S3's ETag of it then (`blob_read_tagged`). On S3 the
    copy is then made by S3 from that object (`_s3_frozen_copy`), so the bytes are not sent again from here: a
    1080p result is ~4 MB a frame."""
    sha = hashlib.sha256(data).hexdigest()
    key = frozen_key(sha256=sha, ext=ext)
    if is_s3():
        if not _s3_frozen_copy(key=key, source_key=source_key, etag=source_etag, sha256=sha):
            blob_put_named(key=key, data=data, sha256=sha)
        return key, sha
    if blob_put_new(key=key, fileobj=io.BytesIO(data)):
        return key, sha
    with blob_open(key) as f:
        if sha256_of(f) == sha:
            return key, sha  # the same bytes are frozen already
    blob_put(key=key, fileobj=io.BytesIO(data))  # a damaged copy: replace it with the bytes we hold
    return key, sha


def _s3_frozen_copy(*, key: str, source_key: str, etag: str, sha256: str) -> bool:
    """S3 copies `source_key` to `key` on condition that it still has `etag` (an agent may write its upload again
    until its URL expires), with the SHA-256 checksum S3 computes of the copy. True when that checksum is
    `sha256`; False when the copy was refused or holds other bytes (a store that ignores the condition, or keeps
    no checksum): the caller then PUTs the bytes it checked over it."""
    if not (source_key and etag):
        return False
    client, named = _s3_object(key)
    _, source = _s3_object(source_key)
    try:
        answer = client.copy_object(
            **named,
            CopySource=source,
            CopySourceIfMatch=etag,
            ChecksumAlgorithm="SHA256",
            MetadataDirective="REPLACE",  # not the agent's metadata
            ContentType=mimetypes.guess_type(key)[0] or "application/octet-stream",
        )
    except client.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        log.warning("event=result_copy_refused", extra={"result_key": key, "source_key": source_key, "code": code})
        return False
    stored = answer.get("CopyObjectResult", {}).get("ChecksumSHA256") or ""
    return bool(stored) and "-" not in stored and base64.b64decode(stored).hex() == sha256


class DigestMismatch(Exception):
    """A stored result no longer has the SHA-256 recorded when it was frozen: it must not be used."""


def expected_digests(key: str, sha256: str = "") -> set[str]:
    """The digests `key`'s bytes must have: the recorded one and the one a frozen key names (none for old keys)."""
    return {d for d in (sha256, digest_of_key(key)) if d}


def digest_refused(key: str, expected: set[str], actual: str) -> DigestMismatch:
    """Log the mismatch as an event and return the error to raise."""
    log.error("event=result_digest_mismatch", extra={"result_key": key, "expected": sorted(expected), "actual": actual})
    return DigestMismatch(
        f"{key} does not match its recorded SHA-256 (expected {min(expected)[:16]}…, found {actual[:16]}…)"
    )


def blob_read_checked(key: str, *, sha256: str = "", max_bytes: int = 0) -> bytes:
    """The bytes under `key`, checked against `sha256` (or the digest a frozen key names). Raises
    DigestMismatch (logged as an event) when they differ or when the digests given disagree; OSError when missing.
    Keys with no digest at all (written before results were frozen) are read unchecked."""
    expected = expected_digests(key, sha256)
    data = blob_read(key, max_bytes=max_bytes)
    if max_bytes and len(data) > max_bytes:
        raise DigestMismatch(f"{key} is larger than {max_bytes} bytes")
    actual = hashlib.sha256(data).hexdigest()
    if expected and expected != {actual}:
        raise digest_refused(key, expected, actual)
    return data


def blob_digest_check(key: str, *, sha256: str = "", max_bytes: int = 0) -> None:
    """What `blob_read_checked` checks, without the bytes: DigestMismatch (logged) unless `key` holds bytes of
    the digests it must have, and no more than `max_bytes`; FileNotFoundError when missing. On S3 a HEAD reads the
    SHA-256 checksum S3 keeps with the object (`blob_freeze` stores one; S3 computes it from the bytes it holds,
    so an object written over it since has its own, or none); an object without one is read whole, as before."""
    expected = expected_digests(key, sha256)
    if is_s3() and len(expected) == 1:
        client, named = _s3_object(key)
        try:
            head = client.head_object(**named, ChecksumMode="ENABLED")
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(key) from exc
            raise
        if max_bytes and head["ContentLength"] > max_bytes:
            raise DigestMismatch(f"{key} is larger than {max_bytes} bytes")
        stored = head.get("ChecksumSHA256") or ""
        if stored and "-" not in stored:  # a multipart upload's is a checksum of its parts' checksums: read it
            actual = base64.b64decode(stored).hex()
            if {actual} != expected:
                raise digest_refused(key, expected, actual)
            return
    blob_read_checked(key, sha256=sha256, max_bytes=max_bytes)


@dataclass(frozen=True)
class StoredBytes:
    data: bytes
    etag: str = ""  # S3's ETag of the object read ("" on a local disk): a copy of exactly these bytes names it


def blob_read(key: str, *, max_bytes: int = 0) -> bytes:
    """The bytes under `key`, or with `max_bytes` at most max_bytes + 1 of them (the caller refuses a longer one
    without reading it all). FileNotFoundError when nothing is there."""
    return blob_read_tagged(key, max_bytes=max_bytes).data


def blob_read_tagged(key: str, *, max_bytes: int = 0) -> StoredBytes:
    """`blob_read`, with S3's ETag of the object read. One storage request: on S3 a GET, where reading through the
    storage's file object asked HEAD twice before it."""
    if is_s3():
        client, named = _s3_object(key)
        try:
            answer = client.get_object(**named)
        except client.exceptions.NoSuchKey as exc:
            raise FileNotFoundError(key) from exc
        body = answer["Body"]
        try:
            return StoredBytes(body.read(max_bytes + 1) if max_bytes else body.read(), answer.get("ETag") or "")
        finally:
            body.close()  # the rest of an oversized object is never downloaded
    with blob_open(key) as f:
        return StoredBytes(f.read(max_bytes + 1) if max_bytes else f.read())


def blob_exists(key: str) -> bool:
    return default_storage.exists(key)


def blob_open(key: str) -> IO[bytes]:
    return default_storage.open(key, "rb")


def blob_delete(key: str) -> None:
    """Delete `key` if it is there: both storages take a delete of nothing, so no request asks first."""
    if key:
        default_storage.delete(key)


def blobs_delete(keys: list[str]) -> None:
    """Delete these keys, those that are there: on S3 a thousand to a request (DeleteObjects)."""
    keys = [key for key in keys if key]
    if not is_s3():
        for key in keys:
            blob_delete(key)
        return
    for start in range(0, len(keys), S3_DELETE_KEYS):
        named = [_s3_object(key) for key in keys[start : start + S3_DELETE_KEYS]]
        client, bucket = named[0][0], named[0][1]["Bucket"]
        objects = [{"Key": each["Key"]} for _, each in named]
        answer = client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        if answer.get("Errors"):  # keys S3 did not delete now: the caller's next run asks again
            raise OSError(f"S3 did not delete {len(answer['Errors'])} keys, e.g. {answer['Errors'][0]}")


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


def signed_url(
    *, key: str, method: str = "GET", expires_s: int = 600, max_bytes: int = 0, lease_id: int | None = None
) -> str:
    """A URL allowing `method` (GET or PUT) on `key` for `expires_s` seconds.

    A local PUT URL names its lease: the blob view accepts it once, and only while that lease is active.
    """
    if method not in ("GET", "PUT"):
        raise ValueError(method)
    if is_s3():
        client, named = _s3_object(key)
        op = "get_object" if method == "GET" else "put_object"
        return client.generate_presigned_url(op, Params=named, ExpiresIn=expires_s)
    claims = {"k": key, "m": method, "x": int(max_bytes), "e": expires_s}
    if lease_id is not None:
        claims["l"] = int(lease_id)
    token = signing.dumps(claims, key=_signing_key(), salt=SALT, compress=True)
    return settings.PUBLIC_URL.rstrip("/") + reverse("blob", args=[token])


def _signing_key() -> str:
    return derived_key(KEY_PURPOSE, secret=settings.SECRET_KEY)


def _fallback_keys() -> list[str]:
    return [derived_key(KEY_PURPOSE, secret=old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", [])]


class BadBlobToken(Exception):
    pass


def signed_token_read(token: str, *, method: str) -> tuple[str, int, int | None]:
    """(key, max_bytes, lease id or None) of a valid, unexpired local token for `method`."""
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
    return payload["k"], payload["x"], payload.get("l")
