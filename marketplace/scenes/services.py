"""Scene writes: upload (check, store by content, enqueue inspection) and inspection (report into the row)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Protocol

from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from marketplace import blobs
from marketplace.errors import Conflict
from marketplace.locks import advisory_xact_lock
from marketplace.scenes import bundles, conf
from marketplace.scenes.inspection import inspect_upload
from marketplace.scenes.models import Scene, SceneFile, storage_key_of_file
from marketplace.scenes.selectors import SceneNotFound, scenes_of
from marketplace.scenes.validation import SceneRejected, check_upload, mib, size_check, stage_upload

log = logging.getLogger(__name__)


class UploadedFileLike(Protocol):
    """What `scene_upload` reads of an upload: Django's UploadedFile, or `django.core.files.File`."""

    name: str | None
    size: int | None

    def chunks(self) -> Iterable[bytes]: ...


def can_upload(user) -> bool:
    return bool(user.is_authenticated and (user.is_artist or user.is_market_admin))


def store_once(*, key: str, path: Path) -> None:
    """Store `path` under the content-addressed `key` unless it is there already.

    Two uploads of the same bytes at once (a double click, two artists) must not both write the key: a file
    storage would keep the second copy under another name and fail. A Postgres advisory lock on the key
    serialises them; it is held only by uploads of these very bytes, so it is a per-digest mutex, not a
    transaction around slow I/O that others wait for. (SQLite, one machine, has one writer anyway.)
    """
    with transaction.atomic():
        advisory_xact_lock(f"blob:{key}")
        if not blobs.blob_exists(key):
            with open(path, "rb") as f:
                blobs.blob_put(key=key, fileobj=f)


def scene_upload(*, owner, uploaded_file: UploadedFileLike, name: str = "", enqueue: bool = True) -> Scene:
    """Check the upload, store it once under its SHA-256, create the Scene (INSPECTING) and queue its inspection.

    Raises validation.SceneRejected (nothing stored) for bad input, PermissionDenied for users who cannot upload.
    `enqueue=False`: the caller runs `scene_inspect` itself (commands without a broker).
    """
    if not can_upload(owner):
        raise PermissionDenied("only artists can upload scenes")
    filename = PurePosixPath((uploaded_file.name or "").replace("\\", "/")).name
    if uploaded_file.size is not None:
        size_check(uploaded_file.size)  # before reading a byte of it
    with tempfile.TemporaryDirectory(prefix="scene-upload-") as tmp:
        staged = stage_upload(uploaded_file.chunks(), dest=Path(tmp) / "upload")
        checked = check_upload(staged.path, filename=filename)
        key = Scene(sha256=staged.sha256, kind=checked.kind).storage_key
        # Content-addressed: the same bytes are stored once, whoever uploads them.
        store_once(key=key, path=staged.path)
    with transaction.atomic():
        scene = Scene.objects.create(
            owner=owner,
            name=(name or PurePosixPath(filename).stem or "scene")[:200],
            kind=checked.kind,
            sha256=staged.sha256,
            size=staged.size,
            blend_path=checked.blend_path,
            status=Scene.Status.INSPECTING,
        )
        if enqueue:
            from marketplace.scenes.tasks import scene_inspect_task

            transaction.on_commit(lambda: scene_inspect_task.delay(scene.pk))
    log.info(
        "event=scene_uploaded",
        extra={"scene_id": scene.pk, "sha256": scene.sha256, "kind": scene.kind, "size": scene.size},
    )
    return scene


class SceneInUse(Conflict):
    """A job that is quoted, queued or running uses the scene; nothing was changed."""


@transaction.atomic
def scene_delete(*, owner, scene_id: int) -> Scene:
    """Delete the owner's scene: it disappears from every list and can no longer be quoted.

    The row and its stored file stay for the jobs that already used it (a frame of a finished job can still be
    re-rendered after an upheld dispute). Raises SceneNotFound for anyone else's scene or one already deleted,
    SceneInUse while a quoted, queued or running job uses it. Locks the scene row.
    """
    scene = scenes_of(owner=owner).select_for_update().filter(pk=scene_id).first()
    if scene is None:
        raise SceneNotFound("no such scene")
    # A job not finished (quoted, queued or running: jobs.lifecycle stamps finished_at on every ending and clears
    # it when a job reopens) still needs its scene; a quote can still be accepted.
    active = scene.jobs.filter(finished_at__isnull=True).count()
    if active:
        raise SceneInUse(
            f"this scene is used by {active} active job(s): cancel them, or discard their quotes, before deleting it"
        )
    scene.deleted_at = timezone.now()
    scene.save(update_fields=["deleted_at"])
    log.info("event=scene_deleted", extra={"scene_id": scene.pk, "owner_id": owner.pk})
    return scene


def scene_inspect(*, scene_id: int) -> Scene:
    """Inspect a scene that is still INSPECTING (otherwise a no-op: safe to run twice) and record the outcome.

    The slow part (download, bpy) runs outside any transaction; the result lands in one conditional UPDATE.
    """
    scene = Scene.objects.get(pk=scene_id)
    if scene.status != Scene.Status.INSPECTING:
        return scene
    with blobs.blob_open(scene.storage_key) as f:
        outcome = inspect_upload(fileobj=f, kind=scene.kind, blend_path=scene.blend_path)
    status = Scene.Status.READY if outcome.accepted else Scene.Status.REFUSED
    with transaction.atomic():
        Scene.objects.filter(pk=scene_id, status=Scene.Status.INSPECTING).update(
            status=status,
            report=outcome.report,
            refusal=outcome.refusal,
            warnings=outcome.warnings,
            inspected_at=timezone.now(),
        )
    scene.refresh_from_db()
    log.info("event=scene_inspected", extra={"scene_id": scene.pk, "status": scene.status, "refusal": scene.refusal})
    return scene


def scene_inspection_failed(*, scene_id: int, reason: str) -> None:
    """Give up on a scene whose inspection kept failing (storage down, worker crashes): refuse it with the reason."""
    with transaction.atomic():
        Scene.objects.filter(pk=scene_id, status=Scene.Status.INSPECTING).update(
            status=Scene.Status.REFUSED,
            refusal=f"inspection failed: {reason}; please upload the scene again",
            inspected_at=timezone.now(),
        )


class BundleIncomplete(Conflict, SceneRejected):
    """The manifest names files the owner has not uploaded yet; `missing` lists their digests."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"{len(missing)} file(s) of the bundle have not been uploaded yet: upload them first")
        self.missing = missing

    def problem_members(self) -> dict[str, object]:
        return {"missing": self.missing}


def scene_file_put(*, owner, sha256: str, chunks: Iterable[bytes]) -> SceneFile:
    """Store one bundle file sent as `sha256`; SceneRejected when its bytes hash otherwise or pass the limit.

    Idempotent: the same bytes twice make one row and one blob.
    """
    if not can_upload(owner):
        raise PermissionDenied("only artists can upload scenes")
    sha256 = bundles.check_digest(sha256)
    with tempfile.TemporaryDirectory(prefix="scene-file-") as tmp:
        staged = stage_upload(chunks, dest=Path(tmp) / "file", allow_empty=True)
        if staged.sha256 != sha256:
            raise SceneRejected(f"the file's SHA-256 is {staged.sha256}, not the {sha256} it was sent as")
        store_once(key=storage_key_of_file(sha256), path=staged.path)
    row, _ = SceneFile.objects.get_or_create(owner=owner, sha256=sha256, defaults={"size": staged.size})
    return row


def scene_bundle_upload(*, owner, files: Iterable[dict], name: str = "", enqueue: bool = True) -> Scene:
    """Assemble the owner's uploaded files into a zip and upload it as a scene, through every check of an upload.

    Raises BundleIncomplete (with the missing digests) when a file was never uploaded by this owner,
    SceneRejected for a bad manifest or a bundle that an uploaded zip would be refused for.
    """
    if not can_upload(owner):
        raise PermissionDenied("only artists can upload scenes")
    entries = bundles.check_manifest(files)
    held = dict(
        SceneFile.objects.filter(owner=owner, sha256__in={e.sha256 for e in entries}).values_list("sha256", "size")
    )
    missing = sorted({e.sha256 for e in entries} - set(held))
    if missing:
        raise BundleIncomplete(missing)
    total = sum(held[e.sha256] for e in entries)
    if total > conf.MAX_UPLOAD_BYTES:
        raise SceneRejected(f"the bundle is {mib(total)}, over the upload limit of {mib(conf.MAX_UPLOAD_BYTES)}")
    label = (name or PurePosixPath(entries[0].path).stem or "scene")[:200]
    with tempfile.TemporaryDirectory(prefix="scene-bundle-") as tmp:
        archive = bundles.write_zip(
            entries,
            dest=Path(tmp) / "bundle.zip",
            open_blob=lambda digest: blobs.blob_open(storage_key_of_file(digest)),
        )
        with open(archive, "rb") as f:
            return scene_upload(owner=owner, uploaded_file=File(f, name=f"{label}.zip"), name=label, enqueue=enqueue)
