"""The heartbeat pace follows the farm's size (issue 17): agents are told to beat less often as the farm grows, so
its beats stay within what the web tier is sized for, and a node is neither called silent nor loses its lease for
following the pace it was told, also after the pace shortens again."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.dispatch import heartbeats, services
from marketplace.dispatch.models import FrameLease
from marketplace.dispatch.serializers import HeartbeatAnswerSerializer, HelloAnswerSerializer
from marketplace.nodes import conf as node_conf
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import Pace, heartbeat_pace, online_nodes, silence_seconds
from marketplace.nodes.services import heartbeat_pace_update, pace_for
from tests.fixtures.market import make_node, make_queued_job
from workers.agent import heartbeat_pace as agent_pace
from workers.agent import spread

HELLO = {
    "devices": [{"type": "CPU", "name": "CPU 0", "vram_mb": 0, "use": True}],
    "cpu_cores": 2,
    "ram_mb": 4096,
    "blender_version": "5.0.1",
}


@pytest.mark.parametrize(
    ("online", "current", "pace"),
    [
        (0, 10, 10),
        (4_999, 10, 10),  # 500 beats a second at 10 s
        (5_001, 10, 20),
        (10_000, 10, 20),
        (10_001, 20, 30),
        (30_000, 10, 60),
        (1_000_000, 10, 60),  # never past HEARTBEAT_MAX_SECONDS
        (4_600, 20, 20),  # 460 a second at 10 s: too near the budget to shorten
        (4_400, 20, 10),
        (9_000, 60, 20),  # shortens by more than one step at once
    ],
)
def test_the_pace_keeps_the_farms_beats_within_the_budget(online, current, pace):
    assert (node_conf.HEARTBEAT_SECONDS, node_conf.HEARTBEAT_MAX_SECONDS) == (10, 60)
    assert node_conf.HEARTBEATS_PER_SECOND == 500
    assert pace_for(online=online, current=current) == pace


@pytest.fixture
def small_budget(monkeypatch):
    """A budget of one beat every 10 s for the whole farm: four nodes online ask for a 40 s pace."""
    monkeypatch.setattr(node_conf, "HEARTBEATS_PER_SECOND", 0.1)


def heard(node: WorkerNode, seconds_ago: float) -> None:
    WorkerNode.objects.filter(pk=node.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=seconds_ago))


def agent(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    return client


@pytest.mark.django_db
def test_a_growing_farm_is_told_a_longer_pace_and_its_windows_follow(provider, funded_artist, small_budget):
    nodes = [make_node(provider, name=f"rig{i}", unchecked=True) for i in range(4)]
    (first, token), (late, _) = nodes[0], nodes[1]
    assert silence_seconds() == node_conf.OFFLINE_AFTER_SECONDS == 60
    heard(late, 100)  # missed the beats of a 10 s pace, not three of a 40 s one
    assert late not in online_nodes()
    heard(late, 0)

    assert heartbeat_pace_update() == Pace(40, 40)
    assert heartbeat_pace() == Pace(40, 40)
    assert silence_seconds() == 3 * 40
    heard(late, 100)
    assert late in online_nodes()
    heard(late, 3 * 40 + 5)
    assert late not in online_nodes()

    # Agents are told: at hello and in every heartbeat's answer, as the API documents it.
    hello = agent(token).post("/api/v1/agent/hello/", HELLO, format="json")
    assert hello.status_code == 200 and HelloAnswerSerializer(data=hello.json()).is_valid()
    assert hello.json()["heartbeat_seconds"] == 40
    beat = agent(token).post("/api/v1/agent/heartbeat/", {"leases": []}, format="json")
    assert beat.status_code == 200 and HeartbeatAnswerSerializer(data=beat.json()).is_valid()
    assert beat.json()["heartbeat_seconds"] == 40

    # A lease lasts three beats of the pace past its grant and past each beat (LEASE_SECONDS was shorter).
    make_queued_job(funded_artist, frames=1)
    granted = timezone.now()
    delivery = services.lease_create_for_node(node=first)
    assert delivery is not None
    expiry = FrameLease.objects.get(pk=delivery.lease_id).expires_at
    assert granted + timedelta(seconds=120) <= expiry <= timezone.now() + timedelta(seconds=120)
    # A beat right after the grant changes only times: gathered, not written at once (its lease is not near
    # expiry at this pace), then the flush extends the lease to three beats past it.
    with CaptureQueriesContext(connection) as beat_queries:
        answer = services.node_heartbeat(node=first, lease_ids=[delivery.lease_id])
    assert answer.heartbeat_seconds == 40 and answer.leases == {delivery.lease_id: "active"}
    assert len(beat_queries) == 1
    assert heartbeats.heartbeats_flush() >= 1
    first.refresh_from_db()
    assert FrameLease.objects.get(pk=delivery.lease_id).expires_at == first.last_heartbeat + timedelta(seconds=120)


@pytest.mark.django_db
def test_a_shorter_pace_keeps_the_longer_windows_until_every_agent_told_it_has_beaten(provider, small_budget):
    nodes = [make_node(provider, name=f"rig{i}", unchecked=True)[0] for i in range(4)]
    assert heartbeat_pace_update() == Pace(40, 40)
    for node in nodes:
        services.node_goodbye(node=node)
    started = timezone.now()

    # None left: told 10 s from now on, but agents told 40 s may not beat for 40 s more.
    assert heartbeat_pace_update() == Pace(10, 40)
    assert heartbeat_pace() == Pace(10, 40) and silence_seconds() == 120
    assert services.node_heartbeat(node=nodes[0], lease_ids=[]).heartbeat_seconds == 10
    assert heartbeats.lease_seconds() == 120
    # Updated again in that time: still held.
    assert heartbeat_pace_update() == Pace(10, 40)

    # Once every agent told 40 s has beaten again (twice the pace, and the processes' cached reads), the windows
    # are the shortest pace's again.
    after = started + timedelta(seconds=2 * 40 + 5 + 1)
    assert heartbeat_pace_update(now=after) == Pace(10, 10)
    assert silence_seconds() == node_conf.OFFLINE_AFTER_SECONDS
    assert heartbeats.lease_seconds() == services.conf.LEASE_SECONDS


@pytest.mark.django_db
def test_a_node_following_the_longer_pace_is_not_silent_before_its_next_beat(provider, small_budget):
    nodes = [make_node(provider, name=f"rig{i}", unchecked=True)[0] for i in range(4)]
    assert heartbeat_pace_update() == Pace(40, 40)
    heard(nodes[0], 100)  # told 40 s; missed two beats at most
    for node in nodes[2:]:
        services.node_goodbye(node=node)
    # Two online: 20 s would keep them within the budget, 30 s within it with the margin a shorter pace needs.
    assert heartbeat_pace_update() == Pace(30, 40)
    assert nodes[0] in online_nodes()
    services.leases_reap()  # the reaper's pass over silent nodes
    nodes[0].refresh_from_db()
    assert nodes[0].status == WorkerNode.Status.IDLE


@pytest.mark.parametrize(
    ("answer", "every"),
    [
        ({"heartbeat_seconds": 40}, 40.0),
        ({}, 10.0),  # a marketplace before session 19: the pace so far
        ({"heartbeat_seconds": 0}, 1.0),
        ({"heartbeat_seconds": 10**6}, 600.0),  # a lease must not lapse for a bad answer
        ({"heartbeat_seconds": "40"}, 10.0),
        ({"heartbeat_seconds": True}, 10.0),
    ],
)
def test_the_agent_beats_at_the_pace_it_is_told_within_bounds(answer, every):
    assert agent_pace({"leases": {}, "status": "idle", "owner_pause": None, **answer}, 10.0) == every


def test_agents_that_lost_the_broker_together_come_back_spread_over_the_pace():
    """After a broker restart every agent must say hello again at once; each first waits `spread(pace)`, so at
    100,000 nodes (a 60 s pace) the hellos come ~1,700 a second, as the beats do."""
    draws = [spread(60.0) for _ in range(3000)]
    assert all(0.0 <= d <= 60.0 for d in draws)
    by_tenth = Counter(int(d // 6) for d in draws)
    assert all(200 <= by_tenth[i] <= 400 for i in range(10)), by_tenth  # 300 each, give or take 6 deviations
    assert spread(0.0) == 0.0
