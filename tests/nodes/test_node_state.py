"""Issue 12, one test per bug: the node's status follows the facts through cancel, pause, goodbye and ban."""

import pytest
from django.urls import reverse

from marketplace.dispatch import services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import services as job_services
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.nodes import selectors
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_set_paused, node_status_sync_one
from tests.fixtures.market import make_node, make_queued_job
from tests.fixtures.plans import generic_plan, statements_run

pytestmark = pytest.mark.django_db
S = WorkerNode.Status


def leased(artist, provider, *, frames: int = 2):
    job = make_queued_job(artist, frames=frames)
    node, _ = make_node(provider, unchecked=True)
    delivery = services.lease_create_for_node(node=node)
    assert delivery is not None
    node.refresh_from_db()
    assert node.status == S.BUSY and node.current_frame_id is not None
    return job, node, delivery


def test_cancelling_a_running_job_frees_its_node_for_the_next_job(funded_artist, provider):
    job, node, _ = leased(funded_artist, provider)
    job_services.job_cancel(job_id=job.pk, owner=funded_artist)
    node.refresh_from_db()
    assert (node.status, node.current_frame_id) == (S.IDLE, None)
    next_job = make_queued_job(funded_artist, frames=1)
    delivery = services.lease_create_for_node(node=node)
    assert delivery is not None and FrameLease.objects.get(pk=delivery.lease_id).frame.job_id == next_job.pk


def test_the_owners_pause_survives_heartbeats_until_resumed(funded_artist, provider):
    node, _ = make_node(provider, unchecked=True)
    assert node_set_paused(owner=provider, node_id=node.pk, paused=True)
    for _ in range(3):
        beat = services.node_heartbeat(node=node, lease_ids=[], paused=False)
    node.refresh_from_db()
    assert node.status == S.PAUSED and beat.status == S.PAUSED and beat.owner_pause == "finish"
    make_queued_job(funded_artist, frames=1)
    assert services.lease_create_for_node(node=node) is None
    node_set_paused(owner=provider, node_id=node.pk, paused=False)
    node.refresh_from_db()
    assert node.status == S.IDLE


def test_pause_with_finish_lets_the_frame_finish_then_pauses(funded_artist, provider):
    _, node, delivery = leased(funded_artist, provider)
    node_set_paused(owner=provider, node_id=node.pk, paused=True, mode="finish")
    beat = services.node_heartbeat(node=node, lease_ids=[delivery.lease_id])
    assert beat.leases == {delivery.lease_id: "active"} and beat.status == S.BUSY and beat.owner_pause == "finish"
    node.refresh_from_db()
    assert node.status == S.BUSY  # still rendering its frame
    services.lease_release(node=node, lease_id=delivery.lease_id, token=delivery.token)
    node.refresh_from_db()
    assert node.status == S.PAUSED


def test_pause_with_release_gives_the_frame_back_on_the_next_heartbeat(funded_artist, provider):
    _, node, delivery = leased(funded_artist, provider)
    frame_id = FrameLease.objects.get(pk=delivery.lease_id).frame_id
    node_set_paused(owner=provider, node_id=node.pk, paused=True, mode="release")
    beat = services.node_heartbeat(node=node, lease_ids=[delivery.lease_id])
    assert beat.leases == {delivery.lease_id: "released"} and beat.status == S.PAUSED
    node.refresh_from_db()
    frame = Frame.objects.get(pk=frame_id)
    assert node.status == S.PAUSED and frame.state == FrameState.QUEUED and frame.attempts == 0


def test_goodbye_stops_counting_the_node_and_requeues_its_frame_at_once(funded_artist, provider):
    _, node, delivery = leased(funded_artist, provider)
    other, _ = make_node(provider, name="other", unchecked=True)
    assert len(selectors.idle_capacity()) == 1  # `other`; `node` is busy
    assert services.node_goodbye(node=node) == 1
    node.refresh_from_db()
    assert node.status == S.OFFLINE
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    assert lease.state == "released" and lease.frame.state == FrameState.QUEUED
    services.node_goodbye(node=other)
    assert selectors.idle_capacity() == []
    services.node_heartbeat(node=other, lease_ids=[])  # a goodbye is not undone by a late heartbeat thread
    other.refresh_from_db()
    assert other.status == S.OFFLINE


def test_a_ban_revokes_the_nodes_lease_and_requeues_the_frame(funded_artist, provider):
    _, node, delivery = leased(funded_artist, provider)
    assert services.node_ban(node_id=node.pk) == 1
    node.refresh_from_db()
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    assert node.status == S.BANNED and lease.state == "revoked" and lease.frame.state == FrameState.QUEUED


def test_the_dashboard_pause_form_chooses_finish_or_release(client, provider):
    node, _ = make_node(provider, unchecked=True)
    client.force_login(provider)
    client.post(reverse("nodes:pause", args=[node.pk]), {"paused": "1", "mode": "release"})
    node.refresh_from_db()
    assert (node.status, node.paused_by_owner, node.pause_mode) == (S.PAUSED, True, "release")


def test_a_token_check_heartbeat_without_an_agent_does_not_make_the_node_idle(provider):
    from marketplace.nodes.services import node_create

    node, _ = node_create(owner=provider, name="registered only")
    services.node_heartbeat(node=node, lease_ids=[])  # what `workers register` sends
    node.refresh_from_db()
    assert node.status == S.OFFLINE and selectors.idle_capacity() == []


def test_the_goodbye_endpoint_takes_the_node_out_at_once(provider):
    from rest_framework.test import APIClient

    node, token = make_node(provider, unchecked=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    assert client.post("/api/v1/agent/heartbeat/", {}, format="json").json()["owner_pause"] is None
    r = client.post("/api/v1/agent/goodbye/")
    assert r.status_code == 200 and r.json() == {"offline": True, "released": 0}
    node.refresh_from_db()
    assert node.status == S.OFFLINE
    anonymous = APIClient()
    assert anonymous.post("/api/v1/agent/goodbye/").status_code in (401, 403)


def test_a_paused_node_gives_back_a_frame_it_has_not_started(funded_artist, provider):
    _, node, delivery = leased(funded_artist, provider)
    node_set_paused(owner=provider, node_id=node.pk, paused=True, mode="finish")
    services.node_heartbeat(node=node, lease_ids=[])  # the delivery is still in the agent's queue
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    node.refresh_from_db()
    assert lease.state == "released" and lease.frame.state == FrameState.QUEUED and node.status == S.PAUSED


@pytest.mark.parametrize("now_offset_s", [0, 3600])
def test_the_status_sync_compiled_once_writes_what_the_orm_writes(funded_artist, provider, now_offset_s):
    """node_status_sync compiles its UPDATE once for up to STATUS_SYNC_COMPILED_UP_TO nodes and swaps the values
    in: for every count and every state (busy, banned, paused, silent, idle), and with a `now` that makes them
    silent, it must write exactly what the ORM's statement writes (the rule's one reading: nodes_with_wrong_status)."""
    from datetime import timedelta

    from django.utils import timezone

    from marketplace.nodes.services import STATUS_SYNC_COMPILED_UP_TO, node_status_sync, nodes_with_wrong_status

    _, busy, _ = leased(funded_artist, provider)
    banned, _ = make_node(provider, name="banned", unchecked=True)
    paused, _ = make_node(provider, name="paused", unchecked=True)
    silent, _ = make_node(provider, name="silent", unchecked=True)
    idle, _ = make_node(provider, name="idle", unchecked=True)
    WorkerNode.objects.filter(pk=banned.pk).update(banned_at=timezone.now())
    node_set_paused(owner=provider, node_id=paused.pk, paused=True)
    WorkerNode.objects.filter(pk=silent.pk).update(last_heartbeat=timezone.now() - timedelta(hours=2))
    nodes = [busy, banned, paused, silent, idle]
    assert len(nodes) > STATUS_SYNC_COMPILED_UP_TO  # the ORM path is taken too
    now = timezone.now() + timedelta(seconds=now_offset_s)
    # an hour on, every node is silent: busy and banned come first in the rule, the others are offline
    expected = {S.BUSY, S.BANNED, S.OFFLINE} if now_offset_s else {S.BUSY, S.BANNED, S.PAUSED, S.OFFLINE, S.IDLE}
    for count in range(1, len(nodes) + 1):
        for order in (nodes[:count], nodes[-count:]):
            ids = [n.pk for n in order]
            WorkerNode.objects.filter(pk__in=ids).update(status=S.IDLE, current_frame=None)  # all wrong but one
            assert node_status_sync(node_ids=ids, now=now) == count
            assert [row for row in nodes_with_wrong_status(now) if row[0] in ids] == []
    statuses = dict(WorkerNode.objects.values_list("pk", "status"))
    assert {statuses[n.pk] for n in nodes} == expected
    assert WorkerNode.objects.get(pk=busy.pk).current_frame_id is not None


@pytest.mark.postgres
def test_a_reports_status_sync_reads_only_the_nodes_active_leases_even_with_a_generic_plan(funded_artist, provider):
    """Every report syncs its node's status (is it still busy?). Postgres runs that prepared UPDATE with its generic
    plan, and the statement's constants are in its text (`marketplace.compiled`), so that plan reads the node's
    active leases from the partial index `lease_active_by_node`: not every lease the node ever had, which
    grows for as long as it renders."""
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    assert services.lease_create_for_node(node=node)
    ((sql, params),) = [
        run for run in statements_run(lambda: node_status_sync_one(node_id=node.pk)) if "UPDATE" in run[0]
    ]
    plan = generic_plan(sql, params)
    assert "lease_active_by_node" in plan and "$" in plan, plan
