"""Work that runs Blender on artists' scenes has its own queue: a flood of it never delays the market's own tasks."""

import os
import time
from datetime import timedelta

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.db import connection
from django.utils import timezone

from marketplace.celery import app
from marketplace.dispatch import services
from marketplace.dispatch.models import FrameLease
from marketplace.scenes.models import Scene
from tests.fixtures.market import make_node, make_queued_job, make_scene

HEAVY = ["scenes.inspect", "verification.platform_crop"]
MARKET = [
    "dispatch.match",
    "dispatch.reap",
    "dispatch.frames_queued",
    "verification.frame_rendered",
    "jobs.job_check",
    "verification.crop_reported",
    "verification.resume",
    "payments.mature_earnings",
    "payments.resend_payouts",
    "jobs.frame_assemble",
    "jobs.assemble_missing",
]


@pytest.mark.parametrize("name", HEAVY + MARKET)
def test_scene_work_is_routed_to_the_heavy_queue_and_the_rest_to_the_default(name):
    assert name in app.tasks
    queue = app.amqp.router.route({}, name)["queue"].name
    assert queue == ("heavy" if name in HEAVY else "celery")


def _close_db(**kwargs) -> None:
    connection.close()


@pytest.fixture
def default_queue_worker(monkeypatch):
    """A real worker on the real Redis consuming only the default queue, as `make run` and compose start one."""
    if not os.environ.get("TEST_REDIS_URL"):
        pytest.skip("needs the real Redis of `make test` (TEST_REDIS_URL)")
    broker = redis.Redis.from_url(app.conf.broker_url)
    broker.delete("celery", "heavy")
    # The app reads its configuration from Django settings under the CELERY_ namespace: the prefixed key wins.
    monkeypatch.setattr(app.conf, "CELERY_TASK_ALWAYS_EAGER", False)
    task_postrun.connect(_close_db, weak=False)  # the worker thread's connection must not outlive the test db
    try:
        with start_worker(app, queues=["celery"], perform_ping_check=False, pool="solo", loglevel="WARNING"):
            yield broker
    finally:
        task_postrun.disconnect(_close_db)
    broker.delete("celery", "heavy")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_matching_proceeds_while_a_flood_of_inspections_waits_for_its_own_worker(
    funded_artist, provider, agent_queues, default_queue_worker
):
    flood = [make_scene(funded_artist, content=f"BLENDER-v500 upload {i}".encode()) for i in range(20)]
    Scene.objects.filter(pk__in=[s.pk for s in flood]).update(status=Scene.Status.INSPECTING)
    for scene in flood:
        app.tasks["scenes.inspect"].delay(scene.pk)
    app.tasks["verification.platform_crop"].delay(999_999)
    job = make_queued_job(funded_artist, frames=2)
    make_node(provider, name="n0", unchecked=True)
    make_node(provider, name="n1", unchecked=True)
    started = time.monotonic()
    app.tasks["dispatch.match"].delay()
    deadline = started + 30
    while FrameLease.objects.filter(frame__job=job).count() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    matched_in = time.monotonic() - started
    assert FrameLease.objects.filter(frame__job=job).count() == 2, "the default worker did not match"
    print(f"matched in {matched_in:.2f} s with 21 heavy tasks queued")
    assert matched_in < 10
    # Nothing of the flood ran on the default worker: every message waits on the heavy queue.
    assert default_queue_worker.llen("heavy") == 21
    assert set(Scene.objects.filter(pk__in=[s.pk for s in flood]).values_list("status", flat=True)) == {
        Scene.Status.INSPECTING
    }


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_task_logs_json_lines_with_its_task_and_lease_ids(
    funded_artist, provider, agent_queues, default_queue_worker, json_log
):
    """A real worker thread runs the reaper: its lines carry the task's id and name and the lease's ids.

    The worker starts first: its start-up runs django.setup(), which applies settings.LOGGING again (replacing
    the root handlers, the test's capture among them)."""
    job = make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    assert services.match_frames() == 1
    lease = FrameLease.objects.get(frame__job=job)
    FrameLease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    result = app.tasks["dispatch.reap"].delay()
    deadline = time.monotonic() + 30
    # Until the worker logs the task done (after task_postrun closed its connection), not just the line sought.
    while f"{result.id}] succeeded" not in json_log.text and time.monotonic() < deadline:
        time.sleep(0.1)
    expired = json_log.one("lease_expired")
    assert (
        expired.items()
        >= {
            "task_name": "dispatch.reap",
            "task_id": result.id,
            "lease_id": lease.pk,
            "frame_id": lease.frame_id,
            "job_id": job.pk,
            "node_id": node.pk,
            "level": "warning",
            "logger": "dispatch",
        }.items()
    )
