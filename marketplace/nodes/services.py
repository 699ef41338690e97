import functools
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, connections, transaction
from django.db.models import Case, Exists, Q, Subquery, Value, When
from django.db.models.sql.subqueries import UpdateQuery
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.accounts.tokens import secret_issue, secret_matches, secret_split
from marketplace.compiled import MARK_NOW, Compiled, id_marks, instance
from marketplace.errors import Conflict, Forbidden, Refused
from marketplace.nodes import broker, conf
from marketplace.nodes.models import HeartbeatPace, WorkerNode
from marketplace.nodes.selectors import (
    PACE_CACHE_SECONDS,
    Pace,
    active_leases,
    node_banned_q,
    node_silent_q,
    online_nodes,
    pace_remember,
    silent_cutoff,
    untrusted_nodes_of,
)
from workers import runtimes

log = logging.getLogger("nodes")

DEVICE_PREFERENCE = ("OPTIX", "CUDA", "HIP", "ONEAPI", "CPU")


class NodeError(Refused):
    """A node action refused for bad input; nothing was changed."""


class NodeForbidden(Forbidden, NodeError):
    """This account may not register a node now (not a provider, banned, or at its limit of untrusted nodes)."""


class NodeBusy(Conflict, NodeError):
    """The node is working or its results are being verified."""


@transaction.atomic
def node_create(*, owner, name: str) -> tuple[WorkerNode, str]:
    """A new node and its token plaintext (shown once; only the hash is kept)."""
    if not owner.is_provider and not owner.is_market_admin:
        raise NodeForbidden("only GPU providers can register nodes")
    if owner.banned_at is not None:
        raise NodeForbidden("this account is banned from the market after failed verification: its nodes get no work")
    name = name.strip()[:100]
    if not name:
        raise NodeError("a node needs a name")
    User.objects.select_for_update().get(pk=owner.pk)  # one provider's node creations one at a time
    untrusted = untrusted_nodes_of(owner=owner).count()
    limit = conf.max_untrusted_nodes()
    if untrusted >= limit:
        raise NodeForbidden(
            f"you have {untrusted} nodes that have not earned trust yet, the most allowed ({limit}): "
            f"a new slot opens when one of them passes {conf.TRUSTED_AFTER} checks in a row"
        )
    issued = secret_issue("nd")
    node = WorkerNode.objects.create(owner=owner, name=name, token_prefix=issued.prefix, token_hash=issued.secret_hash)
    return node, issued.plaintext


def node_delete(*, owner, node_id: int) -> bool:
    """Delete one of the owner's nodes and, after commit, its broker user. Refused while the node holds a lease
    or has a result under verification (their rows would go with it). False if it is not the owner's node."""
    with transaction.atomic():
        node = WorkerNode.objects.select_for_update(no_key=True).filter(pk=node_id, owner=owner).first()
        if node is None:
            return False
        # Read through the relations of dispatch's leases and verification's checks (this app sits below both).
        if (
            node.leases.filter(state="active").exists()
            or node.frame_checks.filter(state="pending").exists()
            or node.leases.filter(crop_check__state="pending").exists()
        ):
            raise NodeBusy(
                "this node is working or its results are being verified: pause it and try again once they are done"
            )
        node.delete()
        broker.nodes_broker_revoke_on_commit(node_ids=[node_id])
    return True


_TOKEN_PREFIX_MARK = "<node token prefix>"
_NODE_COLUMNS = len(WorkerNode._meta.concrete_fields)


@functools.cache
def _authenticate_statement(alias: str) -> Compiled:
    """The node with a token prefix, and its owner: compiled once per database (every agent call runs it, and the
    ORM's compile took more Python than the rest of a heartbeat's authentication)."""
    nodes = WorkerNode.objects.using(alias).select_related("owner").filter(token_prefix=_TOKEN_PREFIX_MARK)
    sql, params = nodes.query.sql_with_params()
    return Compiled.of(sql, params, [_TOKEN_PREFIX_MARK], alias=alias)


def node_authenticate(*, plaintext: str) -> WorkerNode | None:
    parts = secret_split(plaintext)
    if parts is None:
        return None
    statement = _authenticate_statement(connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, statement.params_with([parts[0]]))
        row = cursor.fetchone()  # token_prefix is unique
    if row is None:
        return None
    node = instance(WorkerNode, row[:_NODE_COLUMNS], using=connection.alias)
    node.owner = instance(User, row[_NODE_COLUMNS:], using=connection.alias)
    if not secret_matches(parts[1], node.token_hash) or not node.owner.is_active:
        return None
    return node


@dataclass(frozen=True)
class Capabilities:
    devices: list[dict]
    cpu_cores: int
    ram_mb: int
    blender_version: str
    blender_series: list[str] = field(default_factory=list)  # runtimes the agent has; old agents: their own
    sandbox: str = WorkerNode.Sandbox.UNKNOWN
    sandbox_detail: str = ""


def _series_of(version: str) -> str:
    try:
        return runtimes.series_of_version(version)
    except ValueError:
        return ""


def series_field(series: list[str]) -> str:
    """Stored delimited on both sides (",4.5,5.0,") so one `contains` finds a series on any database."""
    known = sorted({s for s in series if s in runtimes.BY_NAME})
    return f",{','.join(known)}," if known else ""


def _best_device(devices: list[dict]) -> tuple[str, int]:
    types = {str(d.get("type", "")).upper(): d for d in devices if d.get("use", True)}
    for kind in DEVICE_PREFERENCE:
        if kind in types:
            vram = max((int(d.get("vram_mb") or 0) for d in devices if str(d.get("type")).upper() == kind), default=0)
            return kind, vram
    return "CPU", 0


# --- the node's status: derived from facts, in this one place ---------------------------------


def node_status_expression(now=None) -> Case:
    """The rule, first match wins:

    1. an active lease (render or verify crop) → busy, whatever else is true: the lease is real work until it is
       reported, released, revoked or expires (an owner's "finish, then pause" shows busy until then);
    2. banned → banned; 3. silent or said goodbye → offline;
    4. paused by its owner (sticks until resumed) or by the agent's own schedule → paused; 5. otherwise idle.
    """
    S = WorkerNode.Status
    return Case(
        When(Exists(active_leases()), then=Value(S.BUSY)),
        When(node_banned_q(), then=Value(S.BANNED)),
        When(node_silent_q(now), then=Value(S.OFFLINE)),
        When(Q(paused_by_owner=True) | Q(agent_state=WorkerNode.AgentState.PAUSED), then=Value(S.PAUSED)),
        default=Value(S.IDLE),
    )


def node_status_sync(*, node_ids: Iterable[int] | None = None, now=None) -> int:
    """Recompute `status` and `current_frame` of these nodes (all when None) from the facts. The only writer of
    both fields: every service that changes a lease, a heartbeat, a pause or a ban calls it after the change,
    in the same transaction. One UPDATE per STATUS_SYNC_CHUNK nodes, no row locks taken beforehand (so no
    lock-order deadlock with the matcher, which locks node then frame). Time-based facts (a heartbeat going
    stale) change no row: the reaper syncs the nodes they may have made wrong each round (`node_status_sync_due`),
    and every node less often (all: writes made around the services, an admin's in the admin site)."""
    if node_ids is None:  # the full sweep: write only the rows that are wrong
        node_ids = [pk for pk, _, _ in nodes_with_wrong_status(now)]
    ids = sorted({int(i) for i in node_ids if i is not None})
    if not ids:
        return 0
    if len(ids) > STATUS_SYNC_COMPILED_UP_TO:
        fields = _status_fields(now)
        chunks = (ids[start : start + STATUS_SYNC_CHUNK] for start in range(0, len(ids), STATUS_SYNC_CHUNK))
        return sum(WorkerNode.objects.filter(pk__in=chunk).update(**fields) for chunk in chunks)
    return len(_status_sync_compiled(ids, now))


def node_status_sync_due(*, now=None) -> int:
    """The reaper's round: sync the nodes that time alone may have made wrong since their status was written.
    Every other fact the status is derived from changes through a service that syncs the node, and an expired
    lease is closed (and its node synced) by the reaper. What no write changes is silence: a heartbeat growing
    old, or the silence window moving with the pace. Silence decides only between idle or paused and offline
    (busy and banned come first), so those are the nodes stored idle or paused that are silent now, and those
    stored offline that are not: a filter on the nodes' own columns, ~31 ms at 100,000 nodes, where deriving every
    node's status took ~270 ms of each 10 s round (bench_fleet, issue 17)."""
    S = WorkerNode.Status
    silent = node_silent_q(now)
    due = WorkerNode.objects.filter(Q(status__in=[S.IDLE, S.PAUSED]) & silent | Q(status=S.OFFLINE) & ~silent)
    return node_status_sync(node_ids=list(due.values_list("pk", flat=True)), now=now)


def node_status_sync_one(*, node_id: int, now=None) -> str:
    """`node_status_sync` of one node, answering the status it wrote ("" for no such node): a report learns from
    it whether its node holds another lease (busy: rule 1) without reading the leases once more (issue 17), a
    heartbeat what to tell the agent."""
    (status,) = _status_sync_compiled([node_id], now) or [""]
    return status


def _status_sync_compiled(ids: list[int], now) -> list[str]:
    statement = _status_sync_statement(connection.alias, len(ids))
    cutoff = connection.ops.adapt_datetimefield_value(silent_cutoff(now))
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, statement.params_with([cutoff, *ids]))
        return [status for (status,) in cursor.fetchall()]


def _current_frame() -> Subquery:
    # The frame of its oldest active lease: the one it owes first. A lease taken ahead (dispatch's `lease_next`)
    # shows once that one is reported, so taking it changes neither field (`nodes_leased`).
    return Subquery(active_leases().order_by("created_at", "pk").values("frame_id")[:1])


def _status_fields(now) -> dict:
    return {"status": node_status_expression(now), "current_frame": _current_frame()}


def nodes_leased(*, nodes: Iterable[WorkerNode]) -> int:
    """These nodes were each just leased a frame, in this transaction, after it locked their rows: sync those not
    busy already. An active lease makes a node busy whatever else is true (rule 1), and a newer lease does not
    change its current frame (its oldest lease's); the row's status, read under its lock, is what every change
    of a lease synced in its own transaction. A node taking its next lease ahead is busy, so the agent's hot path
    writes nothing here (issue 17)."""
    return node_status_sync(node_ids=[node.pk for node in nodes if node.status != WorkerNode.Status.BUSY])


# A report or a heartbeat syncs one node: Django compiles this UPDATE's CASE of EXISTS subqueries in ~5 ms of
# Python per call, more than Postgres takes to run it (bench_dispatch, issue 17), so for a few nodes it is
# compiled once per database and node count (`marketplace.compiled`).
STATUS_SYNC_COMPILED_UP_TO = 4
# Many nodes are synced in chunks: a statement's parameters are limited (65,535 on Postgres).
STATUS_SYNC_CHUNK = 10_000


@functools.cache
def _status_sync_statement(alias: str, count: int) -> Compiled:
    node_marks = id_marks(count)
    query = WorkerNode.objects.using(alias).filter(pk__in=node_marks).query.chain(UpdateQuery)
    query.add_update_values(_status_fields(MARK_NOW))
    sql, params = query.get_compiler(alias).as_sql()
    cutoff_mark = connections[alias].ops.adapt_datetimefield_value(silent_cutoff(MARK_NOW))
    status = connections[alias].ops.quote_name(WorkerNode._meta.get_field("status").column)
    return Compiled.of(f"{sql} RETURNING {status}", params, [cutoff_mark, *node_marks], alias=alias)


def nodes_with_wrong_status(now=None) -> list[tuple[int, str, str]]:
    """(node id, stored status, derived status) of every node whose stored status disagrees with the facts.
    Empty when the invariant holds; the property test and the admin check use it."""
    rows = WorkerNode.objects.annotate(
        derived=node_status_expression(now),
        derived_frame=_current_frame(),
    ).values_list("pk", "status", "derived", "current_frame_id", "derived_frame")
    return [
        (pk, f"{status} frame={frame}", f"{derived} frame={dframe}")
        for pk, status, derived, frame, dframe in rows
        if (status, frame) != (derived, dframe)
    ]


@transaction.atomic
def node_hello(*, node: WorkerNode, capabilities: Capabilities) -> WorkerNode:
    """Record what the agent reports it has; the node becomes idle unless paused by its owner."""
    device, vram = _best_device(capabilities.devices)
    fields = {
        "devices": capabilities.devices[:32],
        "cpu_cores": max(0, capabilities.cpu_cores),
        "ram_mb": max(0, capabilities.ram_mb),
        "blender_version": capabilities.blender_version[:20],
        "blender_series": series_field(capabilities.blender_series or [_series_of(capabilities.blender_version)]),
        "device_type": device,
        "vram_mb": vram,
        "last_heartbeat": timezone.now(),
        "sandbox": capabilities.sandbox,
        "sandbox_detail": capabilities.sandbox_detail[:200],
    }
    WorkerNode.objects.filter(pk=node.pk).update(**fields, agent_state=WorkerNode.AgentState.ONLINE)
    node_status_sync(node_ids=[node.pk])
    node.refresh_from_db()
    return node


def node_bench_record(*, node: WorkerNode, results: dict[str, float]) -> WorkerNode:
    clean = {str(k)[:20]: float(v) for k, v in results.items() if isinstance(v, int | float) and v >= 0}
    if not clean:
        raise NodeError("benchmark results must map device names to samples per second")
    WorkerNode.objects.filter(pk=node.pk).update(bench=clean, bench_score=max(clean.values()))
    node.refresh_from_db()
    return node


@transaction.atomic
def node_set_paused(*, owner, node_id: int, paused: bool, mode: str = WorkerNode.PauseMode.FINISH) -> bool:
    """The owner pauses (or resumes) a node from the web. It sticks until the owner resumes: heartbeats never
    clear it. `mode`: what the agent does with the frame it is rendering, on its next heartbeat (finish it,
    or give it back at once; see `dispatch.services.node_heartbeat`). False when it is not the owner's node."""
    if mode not in WorkerNode.PauseMode.values:
        raise NodeError(f"pause mode must be one of {', '.join(WorkerNode.PauseMode.values)}")
    fields = {"paused_by_owner": paused}
    if paused:
        fields["pause_mode"] = mode
    if not WorkerNode.objects.filter(pk=node_id, owner=owner).update(**fields):
        return False
    node_status_sync(node_ids=[node_id])
    return True


@transaction.atomic
def node_ban(*, node_id: int, banned: bool = True) -> None:
    """An admin bans (or unbans) a node; a ban takes its broker user after commit. Its leases are closed by
    `dispatch.services.node_ban`. An unban gives nothing back here: the agent's next hello makes a new user."""
    WorkerNode.objects.filter(pk=node_id).update(banned_at=timezone.now() if banned else None)
    node_status_sync(node_ids=[node_id])
    if banned:
        broker.nodes_broker_revoke_on_commit(node_ids=[node_id])


# A pace is shortened only when the farm's beats at the shorter one stay this far under the budget, so a farm
# near a step's edge does not swing between two paces at every update.
PACE_SHORTEN_MARGIN = 0.9


def pace_for(*, online: int, current: int) -> int:
    """The heartbeat pace for `online` nodes: the shortest multiple of HEARTBEAT_SECONDS (up to
    HEARTBEAT_MAX_SECONDS) at which their beats stay within HEARTBEATS_PER_SECOND; shorter than `current` only
    with PACE_SHORTEN_MARGIN to spare."""
    step, top, budget = conf.HEARTBEAT_SECONDS, conf.HEARTBEAT_MAX_SECONDS, conf.HEARTBEATS_PER_SECOND

    def within(rate: float) -> int:
        return min(max(step, top), max(step, step * math.ceil(online / (rate * step))))

    wanted = within(budget)
    return wanted if wanted >= current else min(current, within(budget * PACE_SHORTEN_MARGIN))


@transaction.atomic
def heartbeat_pace_update(*, now: datetime | None = None) -> Pace:
    """Size the heartbeat pace to the nodes online now (Celery beat, every 30 s; `pace_for`). When it shortens,
    the pace it replaces stays the longest in force until every agent told it has beaten again (twice that pace,
    and the processes' cached reads), so no node is called silent, nor a lease let lapse, for following it."""
    now = now or timezone.now()
    online = online_nodes(now).count()
    row = HeartbeatPace.objects.select_for_update().filter(pk=1).first()
    told = row.seconds if row else conf.HEARTBEAT_SECONDS
    held = Pace.stored(row.seconds, row.longest, row.longest_until, now).longest if row else told
    pace = pace_for(online=online, current=told)
    if pace >= held:
        longest, until = pace, now
    else:
        longest, until = held, row.longest_until if row else now
        if pace < told:
            until = max(until, now + timedelta(seconds=2 * told + PACE_CACHE_SECONDS))
    written = {"seconds": pace, "longest": longest, "longest_until": until, "online": online, "updated_at": now}
    HeartbeatPace.objects.update_or_create(pk=1, defaults=written)
    if pace != told:
        log.info("event=heartbeat_pace", extra={"seconds": pace, "was": told, "online": online, "longest": longest})
    pace_remember(None)  # this process reads the new row next, not its cached read
    return Pace(pace, longest)
