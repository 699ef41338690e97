"""Scene writes: upload (check, store by content, enqueue inspection) and inspection (report into the row)."""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Protocol

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from marketplace import blobs
from marketplace.jobs.states import JobState
from marketplace.scenes.inspection import inspect_upload
from marketplace.scenes.models import Scene
from marketplace.scenes.selectors import SceneNotFound, scenes_of
from marketplace.scenes.validation import check_upload, size_check, stage_upload

log = logging.getLogger(__name__)


class UploadedFileLike(Protocol):
    """What `scene_upload` reads of an upload: Django's UploadedFile, or `django.core.files.File`."""

    name: str | None
    size: int | None

    def chunks(self) -> Iterable[bytes]: ...


def can_upload(user) -> bool:
    return bool(user.is_authenticated and (user.is_artist or user.is_market_admin))


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
        if not blobs.blob_exists(key):
            with open(staged.path, "rb") as f:
                blobs.blob_put(key=key, fileobj=f)
    with transaction.atomic():
        scene = Scene.objects.create(
            owner=owner, name=(name or PurePosixPath(filename).stem or "scene")[:200], kind=checked.kind,
            sha256=staged.sha256, size=staged.size, blend_path=checked.blend_path, status=Scene.Status.INSPECTING,
        )
        if enqueue:
            from marketplace.scenes.tasks import scene_inspect_task

            transaction.on_commit(lambda: scene_inspect_task.delay(scene.pk))
    log.info("scene uploaded scene=%s sha256=%s kind=%s size=%s", scene.pk, scene.sha256, scene.kind, scene.size)
    return scene


class SceneInUse(Exception):
    """A job that is quoted, queued or running uses the scene; nothing was changed."""


# A job in one of these states still needs its scene (a quote can still be accepted).
ACTIVE_JOB_STATES = (JobState.QUOTED, JobState.QUEUED, JobState.RUNNING)


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
    active = scene.jobs.filter(state__in=ACTIVE_JOB_STATES).count()
    if active:
        raise SceneInUse(f"this scene is used by {active} active job(s): cancel them, or discard their quotes, "
                         f"before deleting it")
    scene.deleted_at = timezone.now()
    scene.save(update_fields=["deleted_at"])
    log.info("scene deleted scene=%s owner=%s", scene.pk, owner.pk)
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
            status=status, report=outcome.report, refusal=outcome.refusal, warnings=outcome.warnings,
            inspected_at=timezone.now(),
        )
    scene.refresh_from_db()
    log.info("scene inspected scene=%s status=%s refusal=%r", scene.pk, scene.status, scene.refusal)
    return scene


def scene_inspection_failed(*, scene_id: int, reason: str) -> None:
    """Give up on a scene whose inspection kept failing (storage down, worker crashes): refuse it with the reason."""
    with transaction.atomic():
        Scene.objects.filter(pk=scene_id, status=Scene.Status.INSPECTING).update(
            status=Scene.Status.REFUSED, refusal=f"inspection failed: {reason}; please upload the scene again",
            inspected_at=timezone.now(),
        )

