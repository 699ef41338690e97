"""`Scene.active_camera`: the database keeps the camera a lease pins from the scene's report (Postgres and SQLite),
so a lease reads that column and leaves the report unread."""

import pytest

from marketplace.scenes.models import Scene
from tests.fixtures.market import make_scene

pytestmark = pytest.mark.django_db


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
