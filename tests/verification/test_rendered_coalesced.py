"""A burst of reports queues one `verification.frame_rendered` task, which takes every frame waiting; a full
batch asks for another run; none is lost (issue 17: a Celery send per report was ~9 % of its time)."""

import io
import json

import pytest

from marketplace import blobs
from marketplace.celery import app
from marketplace.dispatch import batch, queues, services
from marketplace.dispatch import conf as dispatch_conf
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from tests.fixtures.market import make_node, make_queued_job, png_bytes

TASK = "verification.frame_rendered"
PENDING = f"task:pending:{TASK}"  # marketplace.celery.delay_once's mark


def queued_tasks(broker) -> list[str]:
    return [json.loads(m)["headers"]["task"] for m in broker.lrange("celery", 0, -1)]


def report_all(frames: int, funded_artist, provider, agent_queues, capture) -> list[int]:
    make_queued_job(funded_artist, frames=frames)
    farm = {n.pk: n for n in (make_node(provider, name=f"n{i}", unchecked=True)[0] for i in range(frames))}
    with capture(execute=True):  # the deliveries go out after commit
        deliveries = batch.leases_create()
    for d in deliveries:
        message = json.loads(agent_queues.rpop(queues.queue_key(d.node_id)))
        lease = FrameLease.objects.get(pk=message["lease"])
        blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png_bytes(32, 24, seed=lease.pk)))
        with capture(execute=True):  # each report commits: its after-commit sends run
            outcome = services.lease_report(node=farm[d.node_id], lease_id=lease.pk, token=message["token"], ok=True)
        assert outcome.accepted
    return list(Frame.objects.filter(state=FrameState.RENDERED).values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_burst_of_reports_queues_one_task_and_it_settles_every_frame_waiting(
    celery_queue, agent_queues, funded_artist, provider, django_capture_on_commit_callbacks
):
    rendered = report_all(5, funded_artist, provider, agent_queues, django_capture_on_commit_callbacks)
    assert len(rendered) == 5
    assert queued_tasks(celery_queue).count(TASK) == 1
    app.tasks[TASK].run(frame_id=rendered[0])  # what a worker does with the queued copy (the first report's)
    assert set(Frame.objects.filter(pk__in=rendered).values_list("state", flat=True)) == {FrameState.SETTLED}
    assert not celery_queue.exists(PENDING)  # the run cleared its mark: the next report queues a task again


@pytest.mark.django_db
def test_a_full_batch_asks_for_another_run_until_none_is_left(
    celery_queue, agent_queues, funded_artist, provider, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(dispatch_conf, "RENDERED_BATCH", 2)
    rendered = report_all(5, funded_artist, provider, agent_queues, django_capture_on_commit_callbacks)
    celery_queue.delete("celery")
    runs = 0
    while Frame.objects.filter(state=FrameState.RENDERED).exists():
        app.tasks[TASK].run()  # what a worker does with each queued copy
        runs += 1
        assert queued_tasks(celery_queue).count(TASK) == (1 if Frame.objects.filter(state="rendered").exists() else 0)
        celery_queue.delete("celery")
    assert runs == 3  # 2 frames, 2 (each a full batch: it asks again), then the last one
    assert Frame.objects.filter(pk__in=rendered, state=FrameState.SETTLED).count() == 5
