"""Inspection through a real Celery worker consuming from the real Redis (`make test` provides both)."""
import os
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import transaction

from marketplace.celery import app
from marketplace.scenes import services
from marketplace.scenes.models import Scene
from tests.scenes.conftest import upload_file


@pytest.fixture
def real_worker():
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("needs the real Redis of `make test` (TEST_REDIS_URL)")
    saved = {k: app.conf[k] for k in ("task_always_eager", "broker_url")}
    app.conf.task_always_eager = False
    app.conf.broker_url = f"{redis_url}/5"
    try:
        with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING"):
            yield
    finally:
        app.conf.update(saved)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_inspects_an_uploaded_scene_after_commit(artist, tiny_demo, real_worker):
    with transaction.atomic():  # the task is sent on commit, so the worker sees the row
        scene = services.scene_upload(owner=artist, uploaded_file=upload_file("demo.blend", tiny_demo.read_bytes()))
    deadline = time.monotonic() + 60
    while Scene.objects.get(pk=scene.pk).status == Scene.Status.INSPECTING and time.monotonic() < deadline:
        time.sleep(0.2)
    scene.refresh_from_db()
    assert scene.status == Scene.Status.READY, scene.refusal
    assert scene.report["calibration"]["device"] == "CPU" and scene.report["frame_end"] == 6
