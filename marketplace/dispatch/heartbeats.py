"""Heartbeats gathered and written for many nodes at once (issue 17).

Every agent heartbeats at the farm's pace (`nodes.services.heartbeat_pace_update`), busy or idle; at 10,000 nodes a
transaction per beat was most of the market's database work (bench_dispatch: 57 % of its time). Most beats change
nothing but two times: the node's `last_heartbeat` and its leases' expiry. Such a beat is read (one statement: the
node's facts and the listed leases' states, which the agent's answer needs) and its times are kept in the internal
Redis, one hash field per node; `heartbeats_flush` writes all that are waiting in two statements (Celery beat every
HEARTBEAT_FLUSH_SECONDS, and the reaper before it reaps, so no lease is expired, nor a node called silent, while its
beat waits here).

A beat that changes a fact is written at once, as before (`dispatch.services.node_heartbeat`): the agent pausing
or resuming, a node coming back from silence or a goodbye, the owner's pause. So is one whose node's stored
heartbeat, or any listed lease's stored expiry, is within half its window of running out: when nothing flushes
(Celery down, Redis down) the beats go back to being written one by one instead of letting leases lapse.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import redis
from django.db import connection
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Greatest, Least

from marketplace.batches import batched
from marketplace.celery import internal_redis
from marketplace.dispatch import conf
from marketplace.dispatch.models import FrameLease
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import beats_window, silence_seconds
from marketplace.nodes.services import node_status_sync

log = logging.getLogger("dispatch")

BEATS_KEY = "dispatch:heartbeats"
# Taken beats stay here until written, so a flush that dies is redone by the next one (writes are idempotent).
FLUSHING_KEY = "dispatch:heartbeats:flushing"
# Nodes per written statement: a flush of 100,000 nodes' beats holds each batch's row locks for milliseconds.
FLUSH_BATCH = 2_000


def lease_seconds() -> int:
    """How long a lease lasts past its grant or its node's latest beat: as long as a node may go unheard
    (`nodes.selectors.beats_window`), LEASE_SECONDS at least."""
    return beats_window(conf.LEASE_SECONDS)


@dataclass(frozen=True)
class BeatFacts:
    """What a beat needs to know about its node and listed leases, read in one statement."""

    paused_by_owner: bool
    agent_state: str
    status: str
    heard_lately: bool  # its stored heartbeat is within half the silence window
    leases: dict[int, str]  # each listed lease of this node: its state
    expiring: bool  # an active listed lease's stored expiry is within half the lease window

    def only_times_change(self, agent_state: str) -> bool:
        """Whether writing this beat would change nothing but the node's and its leases' times."""
        return (
            not self.paused_by_owner
            and self.agent_state == agent_state
            and self.status != WorkerNode.Status.OFFLINE
            and self.heard_lately
            and not self.expiring
        )


@functools.cache
def _facts_sql(count: int) -> str:
    node, lease = WorkerNode._meta, FrameLease._meta
    facts = "n.paused_by_owner, n.agent_state, n.status, COALESCE(n.last_heartbeat >= %s, FALSE)"
    if not count:
        return f"SELECT {facts}, NULL, NULL, NULL FROM {node.db_table} n WHERE n.id = %s"
    marks = ", ".join(["%s"] * count)
    return (
        f"SELECT {facts}, l.id, l.state, l.expires_at >= %s FROM {node.db_table} n"
        f" LEFT JOIN {lease.db_table} l ON l.node_id = n.id AND l.id IN ({marks}) WHERE n.id = %s"
    )


def beat_facts(*, node_id: int, lease_ids: list[int], now: datetime) -> BeatFacts | None:
    """The node's facts and its listed leases' states (None: no such node). One read, no lock."""
    adapt = connection.ops.adapt_datetimefield_value
    heard = adapt(now - timedelta(seconds=silence_seconds() / 2))
    params = [heard, adapt(now + timedelta(seconds=lease_seconds() / 2)), *lease_ids] if lease_ids else [heard]
    with connection.cursor() as cursor:
        cursor.execute(_facts_sql(len(lease_ids)), [*params, node_id])
        rows = cursor.fetchall()
    if not rows:
        return None
    paused_by_owner, agent_state, status, heard_lately = rows[0][:4]
    leases = {lease_id: state for *_, lease_id, state, _ in rows if lease_id is not None}
    expiring = any(
        state == FrameLease.State.ACTIVE and not far for *_, lease_id, state, far in rows if lease_id is not None
    )
    return BeatFacts(bool(paused_by_owner), agent_state, status, bool(heard_lately), leases, expiring)


def gather(*, node_id: int, at: datetime, lease_ids: list[int]) -> bool:
    """Keep this beat for the next flush (it replaces the node's earlier one). False when Redis did not take it:
    the caller writes the beat itself."""
    value = f"{round(at.timestamp() * 1_000_000)} {','.join(map(str, lease_ids))}"
    try:
        internal_redis().hset(BEATS_KEY, str(node_id), value)
    except redis.RedisError as exc:
        log.warning("event=heartbeat_gather_failed", extra={"node_id": node_id, "error": str(exc)})
        return False
    return True


# Moves the waiting beats to FLUSHING_KEY unless a flush that did not finish left some there (those are taken
# again, first), and answers them: one atomic step, so a beat is either taken or still waiting, never lost.
_TAKE = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
  redis.call('RENAME', KEYS[1], KEYS[2])
end
return redis.call('HGETALL', KEYS[2])
"""


@dataclass(frozen=True)
class Beat:
    node_id: int
    at: datetime
    lease_ids: list[int]


def _beats_taken() -> list[Beat]:
    flat = cast(list[bytes], internal_redis().eval(_TAKE, 2, BEATS_KEY, FLUSHING_KEY))
    beats = []
    for node_id, value in zip(flat[::2], flat[1::2], strict=True):
        at_us, _, leases = value.decode().partition(" ")
        at = datetime.fromtimestamp(int(at_us) / 1_000_000, tz=UTC)
        beats.append(Beat(int(node_id), at, [int(i) for i in leases.split(",") if i][: conf.LEASES_PER_BEAT]))
    return sorted(beats, key=lambda beat: beat.node_id)


def heartbeats_flush() -> int:
    """Write every gathered beat: each node's `last_heartbeat` and its listed active leases' expiry (`lease_seconds`
    after the beat, never past the frame's render cap), never moving either back but to the cap. Idempotent: a
    flush that dies before the end leaves its beats to the next one. How many beats were written."""
    beats = _beats_taken()
    for batch in batched(beats, FLUSH_BATCH):
        # Leases before nodes: the order a report locks them in.
        if connection.vendor == "postgresql":
            _leases_extend_many(batch)
            back = _nodes_heard_many(batch)
        else:  # SQLite (`make run`, one local agent): no UPDATE … FROM unnest, and nothing to gain from one
            for beat in batch:
                leases_extend_orm(node_id=beat.node_id, lease_ids=beat.lease_ids, at=beat.at)
            back = _nodes_heard_orm(batch)
        # A node the stored heartbeat had already called silent is idle (or busy) again.
        node_status_sync(node_ids=back)
    if beats:
        internal_redis().delete(FLUSHING_KEY)
    return len(beats)


def _leases_extend_many(beats: list[Beat]) -> None:
    pairs = [(lease_id, beat.node_id, beat.at) for beat in beats for lease_id in beat.lease_ids]
    if not pairs:
        return
    lease_ids, node_ids, ats = zip(*pairs, strict=True)
    # Never moved back (an older beat flushed again), but always held to the render cap.
    extended = "LEAST(GREATEST(l.expires_at, b.at + %s * INTERVAL '1 second'), l.created_at + %s * INTERVAL '1 second')"
    windows = [lease_seconds(), conf.MAX_RENDER_SECONDS]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {FrameLease._meta.db_table} l SET expires_at = {extended}"
            " FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[]) AS b(id, node_id, at)"
            " WHERE l.id = b.id AND l.node_id = b.node_id AND l.state = 'active' AND l.expires_at >= b.at"
            f" AND l.expires_at <> {extended}",
            [*windows, list(lease_ids), list(node_ids), list(ats), *windows],
        )


def _nodes_heard_many(beats: list[Beat]) -> list[int]:
    """Write the beats' times as the nodes' `last_heartbeat`; the nodes whose stored status said offline
    although their agent had not said goodbye (silent until this beat)."""
    offline, gone = WorkerNode.Status.OFFLINE, WorkerNode.AgentState.OFFLINE
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH heard AS (UPDATE {WorkerNode._meta.db_table} n SET last_heartbeat = b.at"
            " FROM unnest(%s::bigint[], %s::timestamptz[]) AS b(id, at)"
            " WHERE n.id = b.id AND (n.last_heartbeat IS NULL OR n.last_heartbeat < b.at)"
            " RETURNING n.id, n.status, n.agent_state)"
            " SELECT id FROM heard WHERE status = %s AND agent_state <> %s",
            [[beat.node_id for beat in beats], [beat.at for beat in beats], offline, gone],
        )
        return [node_id for (node_id,) in cursor.fetchall()]


def _nodes_heard_orm(beats: list[Beat]) -> list[int]:
    for beat in beats:
        earlier = Q(last_heartbeat__lt=beat.at) | Q(last_heartbeat__isnull=True)
        WorkerNode.objects.filter(earlier, pk=beat.node_id).update(last_heartbeat=beat.at)
    return list(
        WorkerNode.objects.filter(pk__in=[beat.node_id for beat in beats], status=WorkerNode.Status.OFFLINE)
        .exclude(agent_state=WorkerNode.AgentState.OFFLINE)
        .values_list("pk", flat=True)
    )


def leases_extend_orm(*, node_id: int, lease_ids: list[int], at: datetime) -> None:
    """Extend the node's listed leases that were active and unexpired at `at` to `lease_seconds` after it (never
    moved back, always held to the render cap): the ORM's form, for SQLite."""
    extended = Least(
        Greatest(F("expires_at"), Value(at + timedelta(seconds=lease_seconds()))),
        F("created_at") + Value(timedelta(seconds=conf.MAX_RENDER_SECONDS)),
        output_field=DateTimeField(),
    )
    FrameLease.objects.filter(
        node_id=node_id, pk__in=lease_ids, state=FrameLease.State.ACTIVE, expires_at__gte=at
    ).update(expires_at=extended)


def waiting(client: redis.Redis) -> int:
    """Beats waiting to be written, in the internal Redis that `client` reaches (the farm page and /metrics)."""
    return cast(int, client.hlen(BEATS_KEY)) + cast(int, client.hlen(FLUSHING_KEY))
