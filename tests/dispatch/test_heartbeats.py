"""Heartbeats gathered and written for many nodes at once (dispatch.heartbeats, issue 17): a beat that changes
nothing but times writes nothing until the flush; any other is written at once; nothing waiting is lost to the
reaper, a dead flush, a goodbye or a Redis that is down."""

from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace import celery as market_celery
from marketplace.dispatch import conf, heartbeats, services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.nodes import conf as node_conf
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_set_paused
from tests.fixtures.market import make_node, make_queued_job

pytestmark = pytest.mark.django_db
S = WorkerNode.Status


def waiting() -> int:
    return heartbeats.waiting(market_celery.internal_redis())


def busy_node(artist, provider, *, name: str = "rig") -> tuple[WorkerNode, int]:
    make_queued_job(artist, frames=1)
    node, _ = make_node(provider, name=name, unchecked=True)
    delivery = services.lease_create_for_node(node=node)
    assert delivery is not None
    return node, delivery.lease_id


def stored(node: WorkerNode, lease_id: int | None = None):
    node.refresh_from_db()
    expiry = FrameLease.objects.get(pk=lease_id).expires_at if lease_id else None
    return node.last_heartbeat, expiry


def test_a_beat_that_changes_only_times_is_one_read_and_the_flush_writes_it(funded_artist, provider):
    node, lease_id = busy_node(funded_artist, provider)
    idle, _ = make_node(provider, name="idle", unchecked=True)
    before, expiry_before = stored(node, lease_id)
    started = timezone.now()
    with CaptureQueriesContext(connection) as busy_beat:
        beat = services.node_heartbeat(node=node, lease_ids=[lease_id, 999_999])
    with CaptureQueriesContext(connection) as idle_beat:
        services.node_heartbeat(node=idle, lease_ids=[])
    assert beat == services.Heartbeat(
        leases={lease_id: "active"}, status=S.BUSY, owner_pause=None, heartbeat_seconds=node_conf.HEARTBEAT_SECONDS
    )
    assert len(busy_beat) == len(idle_beat) == 1
    assert busy_beat[0]["sql"].lstrip().upper().startswith("SELECT")
    assert stored(node, lease_id) == (before, expiry_before)  # nothing written yet
    assert waiting() == 2

    with CaptureQueriesContext(connection) as flush:
        assert heartbeats.heartbeats_flush() == 2
    heard, expiry = stored(node, lease_id)
    assert started <= heard <= timezone.now()
    lease_window = timedelta(seconds=conf.LEASE_SECONDS)
    assert heard + lease_window == expiry and expiry > expiry_before
    assert stored(idle)[0] >= started
    assert waiting() == 0 and heartbeats.heartbeats_flush() == 0
    if connection.vendor == "postgresql":
        assert len(flush) == 2  # the leases of every beat, then the nodes: one statement each
    node.refresh_from_db()
    assert node.status == S.BUSY


def test_an_older_beat_never_moves_a_time_back(funded_artist, provider):
    node, lease_id = busy_node(funded_artist, provider)
    services.node_heartbeat(node=node, lease_ids=[lease_id])
    heartbeats.heartbeats_flush()
    newer = stored(node, lease_id)
    earlier = timezone.now() - timedelta(seconds=5)
    assert heartbeats.gather(node_id=node.pk, at=earlier, lease_ids=[lease_id])
    assert heartbeats.heartbeats_flush() == 1
    assert stored(node, lease_id) == newer


def test_a_beat_that_changes_a_fact_is_written_at_once(funded_artist, provider):
    node, lease_id = busy_node(funded_artist, provider)
    idle, _ = make_node(provider, name="idle", unchecked=True)
    # The agent pauses itself: matching must pass it over now, not after the flush.
    services.node_heartbeat(node=idle, lease_ids=[], paused=True)
    idle.refresh_from_db()
    assert (idle.agent_state, idle.status) == (WorkerNode.AgentState.PAUSED, S.PAUSED)
    services.node_heartbeat(node=idle, lease_ids=[])
    idle.refresh_from_db()
    assert (idle.agent_state, idle.status) == (WorkerNode.AgentState.ONLINE, S.IDLE)
    # Back from silence: offline until this beat.
    silent = timezone.now() - timedelta(seconds=node_conf.OFFLINE_AFTER_SECONDS + 5)
    WorkerNode.objects.filter(pk=idle.pk).update(last_heartbeat=silent, status=S.OFFLINE)
    services.node_heartbeat(node=idle, lease_ids=[])
    idle.refresh_from_db()
    assert idle.status == S.IDLE and idle.last_heartbeat > silent
    # The owner paused it from the web, to give the frame back.
    node_set_paused(owner=provider, node_id=node.pk, paused=True, mode="release")
    beat = services.node_heartbeat(node=node, lease_ids=[lease_id])
    assert beat.leases == {lease_id: "released"} and beat.owner_pause == "release"
    assert waiting() == 0


def test_a_beat_is_written_at_once_when_its_stored_times_run_low(funded_artist, provider):
    """Without a flush (Celery down) leases and nodes stay alive: a beat whose node was last written more than
    half the silence window ago, or whose lease expires within half the lease window, is written itself."""
    node, lease_id = busy_node(funded_artist, provider)
    half_silent = timezone.now() - timedelta(seconds=node_conf.OFFLINE_AFTER_SECONDS / 2 + 1)
    WorkerNode.objects.filter(pk=node.pk).update(last_heartbeat=half_silent)
    services.node_heartbeat(node=node, lease_ids=[lease_id])
    assert stored(node)[0] > half_silent
    expiring = timezone.now() + timedelta(seconds=conf.LEASE_SECONDS / 2 - 1)
    FrameLease.objects.filter(pk=lease_id).update(expires_at=expiring)
    services.node_heartbeat(node=node, lease_ids=[lease_id])
    assert stored(node, lease_id)[1] > expiring + timedelta(seconds=conf.LEASE_SECONDS / 2)
    assert waiting() == 0


def test_the_reaper_writes_waiting_beats_before_it_judges(funded_artist, provider):
    node, lease_id = busy_node(funded_artist, provider)
    idle, _ = make_node(provider, name="idle", unchecked=True)
    now = timezone.now()
    # Stored times that the reaper, a minute from now, would call expired and silent.
    FrameLease.objects.filter(pk=lease_id).update(expires_at=now + timedelta(seconds=conf.LEASE_SECONDS / 2 + 5))
    heard = now - timedelta(seconds=node_conf.OFFLINE_AFTER_SECONDS / 2 - 5)
    WorkerNode.objects.filter(pk__in=[node.pk, idle.pk]).update(last_heartbeat=heard)
    services.node_heartbeat(node=node, lease_ids=[lease_id])
    services.node_heartbeat(node=idle, lease_ids=[])
    assert waiting() == 2
    later = now + timedelta(seconds=conf.LEASE_SECONDS / 2 + 10)
    assert services.leases_reap(now=later) == 0
    assert FrameLease.objects.get(pk=lease_id).state == FrameLease.State.ACTIVE
    assert Frame.objects.get(leases__pk=lease_id).state == FrameState.LEASED
    idle.refresh_from_db()
    node.refresh_from_db()
    assert (node.status, idle.status) == (S.BUSY, S.IDLE)
    # Without the beats they would have been: the same reap once the agents fell silent.
    assert services.leases_reap(now=later + timedelta(seconds=conf.LEASE_SECONDS)) == 1
    idle.refresh_from_db()
    assert idle.status == S.OFFLINE


def test_a_flush_that_died_leaves_its_beats_to_the_next(funded_artist, provider):
    node, lease_id = busy_node(funded_artist, provider)
    other, _ = make_node(provider, name="other", unchecked=True)
    services.node_heartbeat(node=node, lease_ids=[lease_id])
    taken = heartbeats._beats_taken()  # a flush took them, then died before writing
    assert [beat.node_id for beat in taken] == [node.pk]
    services.node_heartbeat(node=other, lease_ids=[])  # a beat gathered since
    before = stored(node, lease_id)
    assert waiting() == 2
    assert heartbeats.heartbeats_flush() == 1  # the dead flush's beats first
    assert stored(node, lease_id)[0] > before[0] and stored(node, lease_id)[1] > before[1]
    assert heartbeats.heartbeats_flush() == 1  # then those gathered since
    assert waiting() == 0


def test_a_beat_gathered_before_a_goodbye_does_not_bring_the_node_back(funded_artist, provider):
    node, lease_id = busy_node(funded_artist, provider)
    services.node_heartbeat(node=node, lease_ids=[lease_id])
    assert services.node_goodbye(node=node) == 1
    assert heartbeats.heartbeats_flush() == 1
    node.refresh_from_db()
    assert (node.agent_state, node.status) == (WorkerNode.AgentState.OFFLINE, S.OFFLINE)
    lease = FrameLease.objects.get(pk=lease_id)
    assert lease.state == FrameLease.State.RELEASED


def test_a_beat_is_written_at_once_when_redis_is_down(funded_artist, provider, monkeypatch):
    node, lease_id = busy_node(funded_artist, provider)
    before = stored(node, lease_id)
    real = market_celery.internal_redis()
    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    monkeypatch.setattr(market_celery, "_internal_redis", nowhere)
    beat = services.node_heartbeat(node=node, lease_ids=[lease_id])
    assert beat.leases == {lease_id: "active"} and beat.status == S.BUSY
    heard, expiry = stored(node, lease_id)
    assert heard > before[0] and expiry > before[1]
    assert heartbeats.waiting(real) == 0


def _row_writes(*tables: str) -> dict[str, tuple[int, int]]:
    """(rows updated, of those HOT) per table in this test's transaction, as Postgres counts them."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = ANY(%s)",
            [list(tables)],
        )
        return {name: (updated, hot) for name, updated, hot in cur.fetchall()}


@pytest.mark.postgres
def test_a_flush_writes_its_beats_without_an_index_entry(funded_artist, provider):
    # The farm's most frequent write: every node that beat, and every lease a beat named. An index on a column it
    # writes (last_heartbeat, expires_at) would make each of those rows an entry in every index of its table.
    node, lease_id = busy_node(funded_artist, provider)
    idle, _ = make_node(provider, name="idle", unchecked=True)
    services.node_heartbeat(node=node, lease_ids=[lease_id])
    services.node_heartbeat(node=idle, lease_ids=[])
    tables = (WorkerNode._meta.db_table, FrameLease._meta.db_table)
    before = _row_writes(*tables)
    assert heartbeats.heartbeats_flush() == 2
    after = _row_writes(*tables)
    written = {name: tuple(a - b for a, b in zip(after[name], before[name], strict=True)) for name in tables}
    assert written == {WorkerNode._meta.db_table: (2, 2), FrameLease._meta.db_table: (1, 1)}
