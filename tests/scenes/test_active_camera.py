"""`Scene.active_camera`: the database keeps the camera a lease pins from the scene's report (Postgres and SQLite),
so a lease reads that column and leaves the report unread."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from marketplace.scenes.models import Scene
from tests.fixtures.market import REPORT, make_scene

pytestmark = pytest.mark.django_db

BEFORE = [("scenes", "0004_scene_deleted_at")]
AFTER = [("scenes", "0005_scene_active_camera")]


@pytest.mark.parametrize(
    ("report", "camera"),
    [
        ({"active_camera": "CamB", "external_files": [{"raw_path": "//a.png"}] * 50}, "CamB"),
        ({"active_camera": 'Cam "1" — ünïcode'}, 'Cam "1" — ünïcode'),  # text, not its JSON quoting
        ({"active_camera": None}, ""),  # a scene without a camera is refused; its column is still text
        ({}, ""),  # not inspected yet
    ],
)
def test_the_active_camera_column_follows_the_report(artist, report, camera):
    scene = make_scene(artist)
    assert Scene.objects.get(pk=scene.pk).active_camera == "Camera"  # the fixture's report
    Scene.objects.filter(pk=scene.pk).update(report=report)
    assert Scene.objects.get(pk=scene.pk).active_camera == camera
    assert Scene.objects.filter(active_camera=camera).count() == 1


@pytest.fixture
def executor(transactional_db):
    yield MigrationExecutor(connection)
    latest = MigrationExecutor(connection)
    latest.migrate(latest.loader.graph.leaf_nodes())  # the rest of the suite runs on the latest schema


def test_the_migration_fills_the_column_of_the_scenes_already_stored(executor, artist):
    executor.migrate(BEFORE)
    OldScene = executor.loader.project_state(BEFORE).apps.get_model("scenes", "Scene")
    stored = {"with a camera": {**REPORT, "active_camera": "CamB"}, "without one": {}}
    for name, report in stored.items():
        OldScene.objects.create(owner_id=artist.pk, name=name, kind="blend", sha256="0" * 64, size=1, report=report)
    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    assert dict(Scene.objects.values_list("name", "active_camera")) == {"with a camera": "CamB", "without one": ""}
