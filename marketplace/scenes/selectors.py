"""Reads of scenes shared by pages, the API and other apps. Another user's scene does not exist for you."""
from __future__ import annotations

from django.db.models import QuerySet

from marketplace.scenes.models import Scene


class SceneNotFound(Exception):
    pass


def scenes_of(*, owner) -> QuerySet[Scene]:
    return Scene.objects.filter(owner=owner, deleted_at__isnull=True).order_by("-created_at", "-pk")


def scene_of(*, owner, scene_id: object) -> Scene:
    """The owner's scene, or SceneNotFound (also for someone else's scene: a 404 must not confirm it exists)."""
    scene = scenes_of(owner=owner).filter(pk=int(scene_id)).first() if str(scene_id).isdigit() else None
    if scene is None:
        raise SceneNotFound("no such scene")
    return scene
