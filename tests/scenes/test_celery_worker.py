"""Inspection through a real Celery worker consuming from the real Redis (`make test` provides both)."""

import os
import time

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connection, transaction

from marketplace.celery import app
from marketplace.scenes import services
from marketplace.scenes.models import Scene
from tests.scenes.conftest import upload_file


def _close_db(**kwargs) -> None:
    connection.close()


@pytest.fixture
def real_worker():
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("needs the real Redis of `make test` (TEST_REDIS_URL)")
    # The app reads Django settings under the CELERY_ namespace: only the prefixed keys take effect (setting
    # `task_always_eager` left the inspection running inline, without the worker).
    saved = {k: app.conf[k] for k in ("CELERY_TASK_ALWAYS_EAGER", "CELERY_BROKER_URL")}
    app.conf.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.CELERY_BROKER_URL = f"{redis_url}/5"
    app._pool = None
    app.amqp._producer_pool = None
    try:
        # Both queues, as a worker started without -Q does: inspection is routed to the heavy one.
        task_postrun.connect(_close_db, weak=False)  # the worker thread's connection must not outlive the test
        with start_worker(app, queues=["celery", "heavy"], perform_ping_check=False, pool="solo", loglevel="WARNING"):
            yield
    finally:
        task_postrun.disconnect(_close_db)
        app.conf.update(saved)
        app._pool = None
        app.amqp._producer_pool = None


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
