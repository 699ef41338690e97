"""Reads of scenes shared by pages, the API and other apps. Another user's scene does not exist for you."""

from __future__ import annotations

from django.db.models import QuerySet

from marketplace.errors import NotFound
from marketplace.scenes.models import Scene, SceneFile


class SceneNotFound(NotFound):
    """No such scene for this user (also someone else's)."""


def scenes_of(*, owner) -> QuerySet[Scene]:
    return Scene.objects.filter(owner=owner, deleted_at__isnull=True).order_by("-created_at", "-pk")


def scene_of(*, owner, scene_id: object) -> Scene:
    """The owner's scene, or SceneNotFound (also for someone else's scene: a 404 must not confirm it exists)."""
    scene = scenes_of(owner=owner).filter(pk=int(scene_id)).first() if str(scene_id).isdigit() else None
    if scene is None:
        raise SceneNotFound("no such scene")
    return scene


def scene_files_missing(*, owner, digests: list[str]) -> list[str]:
    """The digests among `digests` that `owner` has not uploaded (in the order asked): what to send."""
    held = set(SceneFile.objects.filter(owner=owner, sha256__in=digests).values_list("sha256", flat=True))
    return [d for d in digests if d not in held]
