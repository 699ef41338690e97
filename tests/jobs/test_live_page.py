"""Issue 12: the whole job page is live, and every waiting state says why and what happens next."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import JobNodeBlock
from marketplace.dispatch.selectors import job_waiting
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.services import job_accept, job_quote
from marketplace.jobs.states import FrameState
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_set_paused
from tests.fixtures.market import make_node, make_queued_job
from tests.jobs.conftest import settle_with_result

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(funded_artist, scene) -> Job:
    return job_accept(job_id=job_quote(owner=funded_artist, scene=scene).pk, owner=funded_artist)


def poll(client, job, cursor: str = "") -> dict:
    response = client.get(reverse("jobs:fragment", args=[job.pk]), {"cursor": cursor})
    assert response.status_code == 200
    return response.json()


def test_a_poll_without_cursor_sends_everything_and_with_it_only_what_changed(client, funded_artist, job, node):
    client.force_login(funded_artist)
    Frame.objects.filter(job=job).update(updated_at=timezone.now() - timedelta(minutes=1))  # older than the slack
    first = poll(client, job)
    assert set(first["parts"]) == {"actions", "waiting", "summary", "strip", "frames", "cards"} and first["live"]
    again = poll(client, job, first["cursor"])
    assert again["parts"] == {} and again["rows"] == {}  # nothing changed
    frame = job.frames.get(number=2)
    settle_with_result(frame, node, seed=2)
    changed = poll(client, job, again["cursor"])
    assert set(changed["rows"]) == {f"frame-row-{frame.pk}", f"frame-card-{frame.pk}"}
    assert 'data-state="settled"' in changed["rows"][f"frame-row-{frame.pk}"]
    assert "Download 1 finished frame (zip)" in changed["parts"]["actions"]  # the header is live too
    assert "1 of 4" in changed["parts"]["summary"]


def test_the_header_follows_the_job_to_done_without_a_reload(
    client, funded_artist, job, node, django_capture_on_commit_callbacks
):
    client.force_login(funded_artist)
    cursor = poll(client, job)["cursor"]
    with django_capture_on_commit_callbacks(execute=True):
        for frame in job.frames.all():
            settle_with_result(frame, node, seed=frame.number)
    answer = poll(client, job, cursor)
    assert answer["state"] == "done" and answer["live"] is False
    assert "Cancel job" not in answer["parts"]["actions"] and "Download 4 finished frames" in answer["parts"]["actions"]


def test_a_malformed_cursor_gets_everything_and_an_outsider_a_404(client, funded_artist, outsider, job):
    client.force_login(funded_artist)
    assert "frames" in poll(client, job, "v1.notanumber.x.y.z")["parts"]
    client.force_login(outsider)
    assert client.get(reverse("jobs:fragment", args=[job.pk]), {"cursor": ""}).status_code == 404


def test_waiting_says_no_node_is_online(funded_artist):
    job = make_queued_job(funded_artist, frames=2)
    waiting = job_waiting(job=job)
    assert waiting.code == "no_nodes" and "none is online" in waiting.reason and waiting.frames == 2


def test_waiting_reads_the_queue_once_so_frames_leased_meanwhile_cannot_break_the_page(funded_artist, provider):
    """CI saw the job page answer 500: its queue was counted (one frame), the frame was leased, and the cheapest
    price was then taken over no frames. Here every frame leaves the queue right after the first read."""
    job = make_queued_job(funded_artist, frames=2)
    make_node(provider, unchecked=True)
    reads = []

    def lease_everything_after_the_first_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "jobs_frame" in sql and not reads:
            reads.append(sql)
            Frame.objects.filter(job=job).update(state=FrameState.LEASED)
        return result

    with connection.execute_wrapper(lease_everything_after_the_first_read):
        waiting = job_waiting(job=job)
    assert waiting.frames == 2 and waiting.code == "handing_out"


def test_waiting_says_all_fitting_nodes_are_busy_or_paused(funded_artist, provider):
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    assert dispatch.lease_create_for_node(node=node)
    job = make_queued_job(funded_artist, frames=1)
    assert job_waiting(job=job).code == "all_busy"
    dispatch.node_goodbye(node=node)
    other, _ = make_node(provider, name="other", unchecked=True)
    node_set_paused(owner=provider, node_id=other.pk, paused=True)
    assert job_waiting(job=job).code == "all_paused"


def test_waiting_names_the_vram_and_the_price_floor(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=1, price=1_000_000)
    Job.objects.filter(pk=job.pk).update(quote={"vram_mb": 8192})
    job.refresh_from_db()
    make_node(provider, name="small", device="CUDA", vram_mb=4096, unchecked=True)
    waiting = job_waiting(job=job)
    assert waiting.code == "vram" and "≥ 8 GB VRAM" in waiting.reason and "at most 4 GB" in waiting.reason
    assert dispatch.lease_create_for_node(node=WorkerNode.objects.get(name="small")) is None
    Job.objects.filter(pk=job.pk).update(quote={})
    WorkerNode.objects.update(min_price_per_frame=5_000_000)
    job.refresh_from_db()
    waiting = job_waiting(job=job)
    assert waiting.code == "price" and "below every online node's floor" in waiting.reason


def test_a_frame_only_a_refused_node_could_take_is_offered_to_the_artist(client, funded_artist, provider):
    job = make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    dispatch.node_block_for_job(job_id=job.pk, node_id=node.pk)  # e.g. an upheld dispute on a one-node farm
    waiting = job_waiting(job=job)
    assert waiting.code == "blocked" and waiting.choices == []  # not yet: it may be placed soon
    Frame.objects.filter(job=job).update(updated_at=timezone.now() - timedelta(minutes=10))
    waiting = job_waiting(job=job)
    assert waiting.choices == ["allow_refused_nodes"]
    client.force_login(funded_artist)
    page = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "whose results on this job were refused" in page and 'id="allow-refused"' in page
    api = client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert api["waiting"]["code"] == "blocked" and api["waiting"]["choices"] == ["allow_refused_nodes"]
    client.post(reverse("jobs:allow_refused_nodes", args=[job.pk]))
    assert not JobNodeBlock.objects.filter(job=job).exists()
    assert dispatch.lease_create_for_node(node=node) is not None
    assert Frame.objects.get(job=job).state == FrameState.LEASED


def test_an_outsider_cannot_let_nodes_back_onto_someone_elses_job(client, funded_artist, outsider, provider):
    job = make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    dispatch.node_block_for_job(job_id=job.pk, node_id=node.pk)
    client.force_login(outsider)
    assert client.post(reverse("jobs:allow_refused_nodes", args=[job.pk])).status_code == 404
    assert JobNodeBlock.objects.filter(job=job).exists()
