"""Celery tasks of the scenes app: thin, take ids, idempotent (the service skips scenes already inspected)."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from marketplace.scenes import services

# Storage and database hiccups are worth retrying; anything about the scene itself is already a refusal.
TRANSIENT = (OSError, DatabaseError)
MAX_RETRIES = 3


@shared_task(name="scenes.inspect", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def scene_inspect_task(self, scene_id: int) -> None:
    try:
        services.scene_inspect(scene_id=scene_id)
    except TRANSIENT as exc:
        if self.request.retries >= MAX_RETRIES:
            services.scene_inspection_failed(scene_id=scene_id, reason=f"{type(exc).__name__}: {exc}")
            return
        raise self.retry(exc=exc, countdown=5 * 2**self.request.retries) from exc
    except Exception:
        # A bug must not leave the scene "inspecting" (and its page polling) forever; the traceback still goes
        # to the worker's log, and the artist is not shown internals.
        services.scene_inspection_failed(scene_id=scene_id, reason="internal error")
        raise
