"""The agent API against untrusted agents: every refusal is clear and changes nothing."""

import json

import pytest
import redis
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from marketplace.dispatch import queues, services
from marketplace.dispatch.models import FrameLease
from marketplace.dispatch.serializers import HeartbeatAnswerSerializer
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger import selectors
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.services import account_get
from tests.fixtures.market import make_node, make_queued_job, png_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]


@pytest.fixture
def manual_matching(monkeypatch):
    """Matching runs only when the test calls it (normally every report kicks it after commit)."""
    monkeypatch.setattr(services, "_after_commit_match", lambda: None)


def agent(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    return client


def take(node) -> dict:
    """Pop the node's delivery from its queue, as the agent does."""
    raw = redis.Redis.from_url(settings.AGENT_BROKER_URL).rpop(queues.queue_key(node.pk))
    assert raw is not None, "nothing was delivered to the node's queue"
    return json.loads(raw)


def put_result(details: dict, body: bytes) -> int:
    path = details["upload_url"].removeprefix(settings.PUBLIC_URL)
    return Client().generic("PUT", path, body, content_type="application/octet-stream").status_code


def lease_once(funded_artist, provider, *, frames: int = 1):
    job = make_queued_job(funded_artist, frames=frames)
    node, token = make_node(provider, unchecked=True)
    assert services.match_frames() == 1
    msg = take(node)
    details = agent(token).get(f"/api/v1/agent/leases/{msg['lease']}/", HTTP_X_LEASE_TOKEN=msg["token"]).json()
    return job, node, token, msg, details


def test_an_honest_agent_renders_and_the_frame_is_paid_once(funded_artist, provider):
    job, node, token, msg, details = lease_once(funded_artist, provider)
    assert details["manifest"]["frame"] == 1 and details["manifest"]["resolution_x"] == 32
    assert put_result(details, png_bytes(32, 24)) == 201
    r = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/",
        {"token": msg["token"], "ok": True, "stats": {"seconds": 1.5}},
        format="json",
    )
    assert r.status_code == 200, r.content
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.SETTLED and frame.node_id == node.pk and frame.thumbnail_key
    replay = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )
    assert replay.status_code == 409 and "not active" in replay.json()["detail"]
    assert LedgerTransaction.objects.filter(idempotency_key__startswith=f"settle:frame:{frame.pk}").count() == 1
    pending = account_get(kind=Account.Kind.PROVIDER_PENDING, owner=provider)
    assert selectors.account_balance(account=pending) > 0
    assert selectors.ledger_total() == 0


def test_an_accepted_report_hands_the_node_its_next_lease(funded_artist, provider, manual_matching):
    """No Celery hop between frames: the report leases the next frame, delivers it to the node's queue and
    answers its details (bench_farm's gap between a report and the next lease)."""
    job, node, token, msg, details = lease_once(funded_artist, provider, frames=2)
    put_result(details, png_bytes(32, 24))
    r = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )
    assert r.status_code == 200, r.content
    following = take(node)
    assert r.json()["next"]["lease"] == following["lease"] != msg["lease"]
    assert r.json()["next"]["manifest"]["frame"] == 2 and r.json()["next"]["upload_url"]
    assert FrameLease.objects.get(pk=following["lease"]).state == FrameLease.State.ACTIVE
    put_result(r.json()["next"], png_bytes(32, 24))
    last = agent(token).post(
        f"/api/v1/agent/leases/{following['lease']}/report/",
        {"token": following["token"], "ok": True},
        format="json",
    )
    assert last.status_code == 200 and last.json()["next"] is None  # nothing left to lease
    assert set(Frame.objects.filter(job=job).values_list("state", flat=True)) == {FrameState.SETTLED}


def next_call(token: str, msg: dict, lease_token: str | None = None):
    return agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/next/", {"token": lease_token or msg["token"]}, format="json"
    )


def report_ok(token: str, msg: dict):
    return agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )


def test_a_rendered_lease_takes_its_next_one_ahead_and_both_are_paid_once(funded_artist, provider, manual_matching):
    """`next` while the result uploads: the node renders frame 2 while frame 1 travels. One lease ahead at most,
    the report then leases nothing more, and every frame is settled exactly once."""
    job, node, token, first, details = lease_once(funded_artist, provider, frames=3)
    r = next_call(token, first)
    assert r.status_code == 200, r.content
    second = take(node)
    assert r.json()["next"]["lease"] == second["lease"] != first["lease"]
    assert r.json()["next"]["manifest"]["frame"] == 2
    assert FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).count() == 2
    # One ahead at most: asking again, for either lease, leases nothing more.
    assert next_call(token, first).json() == {"next": None}
    assert next_call(token, second).json() == {"next": None}
    assert FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).count() == 2
    put_result(details, png_bytes(32, 24))
    r = report_ok(token, first)
    assert r.status_code == 200 and r.json()["next"] is None  # it holds frame 2's lease already
    assert FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).count() == 1
    put_result(
        agent(token).get(f"/api/v1/agent/leases/{second['lease']}/", HTTP_X_LEASE_TOKEN=second["token"]).json(),
        png_bytes(32, 24),
    )
    r = report_ok(token, second)
    assert r.status_code == 200 and r.json()["next"]["manifest"]["frame"] == 3  # idle again: the report leases
    states = dict(Frame.objects.filter(job=job).values_list("number", "state"))
    assert states == {1: FrameState.SETTLED, 2: FrameState.SETTLED, 3: FrameState.LEASED}
    settled = Frame.objects.filter(job=job, state=FrameState.SETTLED).values_list("pk", flat=True)
    keys = [f"settle:frame:{pk}" for pk in settled]
    assert LedgerTransaction.objects.filter(idempotency_key__in=keys).count() == 2
    assert selectors.ledger_total() == 0


def test_taking_the_next_lease_ahead_is_three_statements_and_writes_no_node_row(
    funded_artist, provider, manual_matching, monkeypatch
):
    """The agent's hot path (issue 17): one statement checks the finishing lease, locks the node and then reads and
    locks the frame, one claims it, one writes the lease. The node is busy already and shows the frame it owes
    first (its oldest lease's) until that one is reported, so nothing about it changes; the stored status stays
    what the facts say throughout."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from marketplace.nodes.models import WorkerNode
    from marketplace.nodes.services import nodes_with_wrong_status
    from marketplace.verification import services as verification

    # A Celery message after commit in production, which the inline test tasks would run inside the call.
    samples_asked: list[int] = []
    monkeypatch.setattr(verification, "_samples_prepare_soon", lambda: samples_asked.append(1))

    _, node, token, first, details = lease_once(funded_artist, provider, frames=3)
    samples_asked.clear()
    with CaptureQueriesContext(connection) as queries:
        ahead = services.lease_next(node=node, lease_id=first["lease"], token=first["token"])
    second = take(node)
    assert ahead is not None and ahead.lease_id == second["lease"]
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    assert len(statements) == 3, [sql[:80] for sql in statements]
    assert samples_asked == [1]
    assert not [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "nodes_workernode"')]
    frame_of = dict(FrameLease.objects.filter(node=node).values_list("pk", "frame_id"))
    stored = WorkerNode.objects.values_list("status", "current_frame_id").get(pk=node.pk)
    assert stored == (WorkerNode.Status.BUSY, frame_of[first["lease"]]) and nodes_with_wrong_status() == []
    put_result(details, png_bytes(32, 24))
    with CaptureQueriesContext(connection) as queries:
        assert report_ok(token, first).json()["next"] is None
    # The report's status sync says the node holds another lease (busy): the view does not ask for its leases again.
    node_lease_reads = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and '_framelease"."node_id" =' in q["sql"]
    ]
    assert node_lease_reads == []
    stored = WorkerNode.objects.values_list("status", "current_frame_id").get(pk=node.pk)
    assert stored == (WorkerNode.Status.BUSY, frame_of[second["lease"]]) and nodes_with_wrong_status() == []
    # With nothing left to take, the node's lock and an empty pool, in one statement: the lease is not read again.
    Frame.objects.filter(state=FrameState.QUEUED).update(state=FrameState.CANCELLED)
    with CaptureQueriesContext(connection) as queries:
        assert services.lease_next(node=node, lease_id=second["lease"], token=second["token"]) is None
    assert len([q for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]) == 1


def test_next_is_refused_for_a_foreign_forged_or_finished_lease(funded_artist, provider, manual_matching):
    _, node, token, first, details = lease_once(funded_artist, provider, frames=3)
    _, other_token = make_node(provider, name="other", unchecked=True)
    assert next_call(other_token, first).status_code == 404  # another node's lease looks like no lease
    assert next_call(token, first, lease_token="forged").status_code == 403
    put_result(details, png_bytes(32, 24))
    assert report_ok(token, first).status_code == 200
    take(node)  # the report's next lease
    assert next_call(token, first).status_code == 409  # reported: it can take nothing ahead any more
    assert FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).count() == 1


def test_a_paused_node_takes_nothing_ahead(funded_artist, provider, manual_matching):
    from marketplace.nodes.services import node_set_paused

    _, node, token, first, _ = lease_once(funded_artist, provider, frames=3)
    assert node_set_paused(owner=provider, node_id=node.pk, paused=True)
    assert next_call(token, first).json() == {"next": None}
    assert FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).count() == 1


def test_a_node_that_dies_holding_a_lease_ahead_loses_both_and_their_frames_go_back(
    funded_artist, provider, manual_matching
):
    from datetime import timedelta

    from django.utils import timezone

    job, node, token, first, _ = lease_once(funded_artist, provider, frames=3)
    assert next_call(token, first).json()["next"]
    later = timezone.now() + timedelta(seconds=services.conf.LEASE_SECONDS + 1)
    assert services.leases_reap(now=later) == 2
    assert not FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).exists()
    assert Frame.objects.filter(job=job, state=FrameState.QUEUED).count() == 3
    assert LedgerTransaction.objects.filter(idempotency_key__startswith="settle:frame:").count() == 0


def test_it_refuses_a_forged_lease_token(funded_artist, provider):
    _, _, token, msg, details = lease_once(funded_artist, provider)
    put_result(details, png_bytes(32, 24))
    r = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": "forged", "ok": True}, format="json"
    )
    assert r.status_code == 403 and "token" in r.json()["detail"]
    assert FrameLease.objects.get(pk=msg["lease"]).state == FrameLease.State.ACTIVE


def test_it_refuses_another_nodes_lease(funded_artist, provider):
    _, _, _, msg, details = lease_once(funded_artist, provider)
    _, other_token = make_node(provider, name="other", unchecked=True)
    put_result(details, png_bytes(32, 24))
    r = agent(other_token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )
    assert r.status_code == 404
    r = agent(other_token).get(f"/api/v1/agent/leases/{msg['lease']}/", HTTP_X_LEASE_TOKEN=msg["token"])
    assert r.status_code == 404
    assert FrameLease.objects.get(pk=msg["lease"]).state == FrameLease.State.ACTIVE


def test_it_refuses_a_bad_node_token(funded_artist, provider):
    r = agent("nd00000000.nope").post("/api/v1/agent/heartbeat/", {}, format="json")
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not an image at all", "not a decodable"),
        (None, "is 16x16, leased 32x24"),
        ("flat", "blank"),
    ],
)
def test_bad_results_are_refused_and_the_frame_requeued(funded_artist, provider, body, reason, manual_matching):
    job, _, token, msg, details = lease_once(funded_artist, provider)
    data = {None: png_bytes(16, 16), "flat": png_bytes(32, 24, flat=True)}.get(body, body)
    put_result(details, data)
    r = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )
    assert r.status_code == 422 and reason in r.json()["detail"]
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.QUEUED and reason in frame.last_error
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="settle:").exists()


def test_an_oversized_upload_is_refused(funded_artist, provider, settings):
    _, _, _, _, details = lease_once(funded_artist, provider)
    path = details["upload_url"].removeprefix(settings.PUBLIC_URL)
    from marketplace.dispatch import conf

    r = Client().generic("PUT", path, b"x" * (conf.RESULT_MAX_BYTES + 1), content_type="application/octet-stream")
    assert r.status_code == 413


def test_a_report_after_the_lease_was_reaped_changes_nothing(funded_artist, provider):
    from datetime import timedelta

    from django.utils import timezone

    job, _, token, msg, details = lease_once(funded_artist, provider)
    put_result(details, png_bytes(32, 24))
    assert services.leases_reap(now=timezone.now() + timedelta(hours=1)) == 1
    r = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    frame = Frame.objects.get(job=job)
    assert frame.state in (FrameState.QUEUED, FrameState.LEASED)  # requeued (and maybe re-leased)
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="settle:").exists()


def test_a_frame_failing_on_three_nodes_fails_with_the_errors(funded_artist, provider, manual_matching):
    job = make_queued_job(funded_artist, frames=1)
    for i in range(3):
        node, token = make_node(provider, name=f"n{i}", unchecked=True)
        assert services.match_frames() == 1
        msg = take(node)
        r = agent(token).post(
            f"/api/v1/agent/leases/{msg['lease']}/report/",
            {"token": msg["token"], "ok": False, "error": f"CUDA error {i}"},
            format="json",
        )
        assert r.status_code == 422
        node.status = "paused"
        node.save(update_fields=["status"])
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.FAILED
    assert all(f"CUDA error {i}" in frame.last_error for i in range(3))


def test_a_node_failing_a_job_three_times_is_blocklisted_for_it(funded_artist, provider, manual_matching):
    make_queued_job(funded_artist, frames=5)
    node, token = make_node(provider, unchecked=True)
    for _ in range(3):
        assert services.match_frames() == 1
        msg = take(node)
        agent(token).post(
            f"/api/v1/agent/leases/{msg['lease']}/report/",
            {"token": msg["token"], "ok": False, "error": "boom"},
            format="json",
        )
    assert services.match_frames() == 0


def test_release_requeues_without_counting_a_failure(funded_artist, provider, manual_matching):
    job, _, token, msg, _ = lease_once(funded_artist, provider)
    r = agent(token).post(f"/api/v1/agent/leases/{msg['lease']}/release/", {"token": msg["token"]}, format="json")
    assert r.status_code == 200
    frame = Frame.objects.get(job=job)
    assert frame.attempts == 0 and frame.state == FrameState.QUEUED
    assert FrameLease.objects.get(pk=msg["lease"]).state == FrameLease.State.RELEASED


def test_heartbeat_extends_only_the_nodes_own_active_leases(funded_artist, provider):
    """The listed leases that are the node's, active and unexpired, are extended to LEASE_SECONDS from the beat
    but never past the render cap, at once (a lease near its expiry) or by the next flush (a beat that changes
    nothing but times), and every listed lease's state is read; another node's lease is neither extended nor
    named, an expired one is left to the reaper."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.dispatch import conf, heartbeats

    _, _, token, msg, _ = lease_once(funded_artist, provider, frames=4)
    other, _ = make_node(provider, name="other", unchecked=True)
    assert services.match_frames() == 1
    theirs = take(other)["lease"]
    soon = timezone.now() + timedelta(seconds=5)
    FrameLease.objects.filter(pk__in=[msg["lease"], theirs]).update(expires_at=soon)
    started = timezone.now()
    r = agent(token).post("/api/v1/agent/heartbeat/", {"leases": [msg["lease"], theirs, 999999]}, format="json")
    assert r.status_code == 200 and r.json()["leases"] == {str(msg["lease"]): "active"}
    assert r.json()["status"] == "busy" and r.json()["owner_pause"] is None
    assert HeartbeatAnswerSerializer(data=r.json()).is_valid()  # the documented answer (built without it)
    extended = FrameLease.objects.get(pk=msg["lease"]).expires_at
    assert (
        started + timedelta(seconds=conf.LEASE_SECONDS)
        <= extended
        <= timezone.now() + timedelta(seconds=conf.LEASE_SECONDS)
    )
    assert FrameLease.objects.get(pk=theirs).expires_at == soon
    # Near its render cap: extended to the cap, no further.
    created = timezone.now() - timedelta(seconds=conf.MAX_RENDER_SECONDS - 10)
    FrameLease.objects.filter(pk=msg["lease"]).update(created_at=created)
    agent(token).post("/api/v1/agent/heartbeat/", {"leases": [msg["lease"]]}, format="json")
    assert FrameLease.objects.get(pk=msg["lease"]).expires_at == extended  # its beat waits to be written
    assert heartbeats.heartbeats_flush() == 1
    assert FrameLease.objects.get(pk=msg["lease"]).expires_at == created + timedelta(seconds=conf.MAX_RENDER_SECONDS)
    # Expired: not extended, still named with its state (the reaper takes it back).
    gone = timezone.now() - timedelta(seconds=1)
    FrameLease.objects.filter(pk=msg["lease"]).update(expires_at=gone)
    r = agent(token).post("/api/v1/agent/heartbeat/", {"leases": [msg["lease"]]}, format="json")
    assert r.json()["leases"] == {str(msg["lease"]): "active"}
    assert FrameLease.objects.get(pk=msg["lease"]).expires_at == gone


def test_the_node_broker_user_can_only_touch_its_own_queue(funded_artist, provider):
    node, token = make_node(provider, unchecked=True)
    other, _ = make_node(provider, name="other", unchecked=True)
    hello = agent(token).post(
        "/api/v1/agent/hello/",
        {"devices": [{"type": "CPU", "name": "cpu"}], "cpu_cores": 2, "ram_mb": 1000, "blender_version": "5.0.1"},
        format="json",
    )
    url = hello.json()["broker_url"]
    assert f"node-{node.pk}:" in url
    own = redis.Redis.from_url(url)
    assert own.llen(queues.queue_key(node.pk)) == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        own.llen(queues.queue_key(other.pk))
    with pytest.raises(redis.exceptions.NoPermissionError):
        own.lpush(queues.queue_key(node.pk), "forged")  # agents cannot publish, only consume
    with pytest.raises(redis.exceptions.NoPermissionError):
        own.keys("*")
