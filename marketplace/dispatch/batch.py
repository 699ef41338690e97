"""Matching, set-oriented (the dispatch hot path, issue 17): one round leases many frames to many idle nodes in
a handful of statements, whatever their number. It is the only matcher: a `dispatch.match` round takes up to
`conf.MATCH_ROUND` nodes, and `services.lease_create_for_node` (a report's next lease) is a round of one node.

A round locks up to `limit` idle nodes (`services.matchable_nodes`, SKIP LOCKED, from one drawn at random), groups
them by what they can take (Blender series, price floor, VRAM), reads each group's pool of fitting queued frames
in hand-out order (highest priority first; among equals, round-robin over the artists, the one with the fewest
frames rendering first), locks the pool (SKIP LOCKED: concurrent rounds get disjoint frames), and hands each node
the first frame of its pool that it is not kept off (job-node blocks, abandoned jobs). A node kept off its whole
pool while the pool was cut short reads a pool of its own without those jobs. A node's canary draw replaces its
frame. Then one UPDATE claims every frame, one INSERT writes the leases, one UPDATE re-derives the nodes'
status, and one Redis pipeline delivers the messages after commit.

A round of one node runs on every report's next lease, so it is cut to the bone: one statement locks the node
(compiled once, `marketplace.compiled`) and, only when it took it, reads and locks the first frame of its pool,
leaving out the node's kept-off jobs itself. Then the claim and the INSERT: three statements per frame.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from django.core.exceptions import EmptyResultSet
from django.db import connection, connections, transaction
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone

from marketplace import blobs
from marketplace.accounts.tokens import secret_hash
from marketplace.compiled import MARK_NOW, Compiled, RowReader, id_marks, instance, state_literal
from marketplace.dispatch import conf, heartbeats, hooks, queues, services
from marketplace.dispatch.manifests import expected_size
from marketplace.dispatch.models import FrameLease, JobNodeBlock
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, Job, LeasedCount
from marketplace.jobs.states import JOB_LIVE, FrameState, JobState
from marketplace.logs import lease_fields, subject_scope
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import silent_cutoff
from marketplace.nodes.services import nodes_leased
from marketplace.scenes.models import Scene
from render_kernels import result_summary

log = logging.getLogger("dispatch")

POOL_TRIES = 4  # reads of a group's pool, each ranking twice as far, past frames concurrent rounds locked first
POOL_SPARE = 16  # ranked frames read beyond those needed, so that a read passes over frames others hold


def _profile(node: WorkerNode) -> tuple:
    """What decides which frames fit a node, apart from its own blocks: nodes alike share one frame pool."""
    vram = node.vram_mb if node.device_type != WorkerNode.Device.CPU and node.vram_mb else None
    return tuple(node.series), node.min_price_per_frame, vram


def _fitting_jobs(profile: tuple):
    """The live jobs whose frames fit `profile` (the frames also need state QUEUED and a price at its floor)."""
    series, _, vram = profile
    qs = Job.objects.filter(state__in=JOB_LIVE, is_canary=False, blender_series__in=series)
    if vram:
        qs = qs.filter(Q(quote__vram_mb__isnull=True) | Q(quote__vram_mb__lte=vram))
    return qs


def _kept_off_pairs(node_ids: list[int]):
    """(node id, job id) for each job a node gets no frames of: blocked after failures or refusals, or abandoned
    too often. One statement for both."""
    blocked = JobNodeBlock.objects.filter(node_id__in=node_ids, failures__gte=conf.NODE_FAILURES_PER_JOB)
    abandoned = (
        FrameLease.objects.filter(node_id__in=node_ids, state__in=(FrameLease.State.EXPIRED, FrameLease.State.RELEASED))
        .values("node_id", "frame__job_id")
        .annotate(n=Count("id"))
        .filter(n__gte=conf.ABANDONS_PER_JOB)
    )
    return blocked.values_list("node_id", "job_id").union(abandoned.values_list("node_id", "frame__job_id"))


def _kept_off(node_ids: list[int]) -> dict[int, set[int]]:
    """node id -> jobs it gets no frames of (`_kept_off_pairs`)."""
    out: dict[int, set[int]] = defaultdict(set)
    for node_id, job_id in _kept_off_pairs(node_ids):
        out[node_id].add(job_id)
    return out


# A round of one node (every report's next lease) runs each of these statements once per frame: they are
# compiled once per database and shape (`marketplace.compiled`); the querysets above stay the rules.


@functools.cache
def _jobs_fitting_sql(alias: str, profile: tuple) -> tuple[str, tuple]:
    try:
        return _fitting_jobs(profile).using(alias).values("pk").query.sql_with_params()
    except EmptyResultSet:  # no Blender series (a node's copy from before its hello): it fits no job
        return f"SELECT id FROM {Job._meta.db_table} WHERE 1 = 0", ()


@functools.cache
def _kept_off_of_node_sql(alias: str) -> Compiled:
    (mark,) = id_marks(1)
    sql, params = _kept_off_pairs([mark]).using(alias).query.sql_with_params()
    return Compiled.of(f"SELECT k.job_id FROM ({sql}) k", params, [mark], alias=alias)


@dataclass
class Finishing:
    """The lease a node has rendered and is uploading the result of (`services.lease_next`). The node is leased
    ahead of it only while it is the node's own, active and unexpired lease and the agent holds its token: the
    node's lock checks that in the same statement, and reads the lease's frame and job for the call's logs."""

    lease_id: int
    token: str
    frame_id: int | None = None  # read by the node's lock
    job_id: int | None = None
    kind: str = ""


# The per-call values of the node lock: marks for ids (`marketplace.compiled`) and for the finishing token's hash.
_TOKEN_HASH_MARK = "<finishing lease token hash>"
_FINISHING_READ = ("finishing_frame", "finishing_job", "finishing_kind")  # annotations of the node lock


def _with_node_reads(qs):
    """`qs` of nodes with what matching's hooks read of each (`hooks.node_reads`: its trust, its canary offer). A
    scene on the way (a canary's) is read as a lease reads one (`services.LEASE_SCENE_DEFERRED`): the same for a
    hit as for a miss, and what the lease of a hit needs."""
    reads = hooks.node_reads()
    if not reads:
        return qs  # select_related() without names would follow every FK
    deferred = [name for path in _scene_paths(reads) for name in services.scene_deferred(path)]
    return qs.select_related(*reads).defer(*deferred)


def _scene_paths(reads: tuple[str, ...]) -> list[str]:
    """The prefixes of the select_related paths `reads` (from the node) that end at a scene."""
    paths = []
    for read in reads:
        names, model = read.split("__"), cast(Any, WorkerNode)
        for depth, name in enumerate(names, start=1):
            model = model._meta.get_field(name).related_model
            if model is Scene:
                paths.append("__".join(names[:depth]))
    return paths


@dataclass(frozen=True)
class _NodeLock:
    statement: Compiled
    reader: RowReader  # the locked node, with its reads, from the leading columns of the statement's rows


@functools.cache
def _node_lock_sql(alias: str, finishing: bool) -> _NodeLock:
    """SELECT ... FOR UPDATE (SKIP LOCKED) of one matchable node (and, when `finishing`, the frame, job and kind of
    its finishing lease, `Finishing`), with its reads (`_with_node_reads`)."""
    node_mark, lease_mark = id_marks(2)
    now = MARK_NOW
    matchable = services.matchable_nodes(now=now, finishing_lease_id=lease_mark if finishing else None).using(alias)
    qs = matchable.filter(pk=node_mark)
    if finishing:
        lease = FrameLease.objects.filter(
            pk=lease_mark,
            node=OuterRef("pk"),
            state=FrameLease.State.ACTIVE,
            expires_at__gte=now,
            token_hash=_TOKEN_HASH_MARK,
        )
        read = dict(zip(_FINISHING_READ, ("frame_id", "frame__job_id", "kind"), strict=True))
        qs = qs.annotate(**{name: Subquery(lease.values(field)) for name, field in read.items()}).filter(Exists(lease))
    sql, params, reader = RowReader.compile(_with_node_reads(services._locking(qs)), alias=alias)
    ops = connections[alias].ops
    marks = [node_mark, ops.adapt_datetimefield_value(silent_cutoff(now))]
    if finishing:
        marks += [lease_mark, ops.adapt_datetimefield_value(now), _TOKEN_HASH_MARK]
    return _NodeLock(Compiled.of(sql, params, marks, alias=alias), reader)


@dataclass(frozen=True)
class _PoolRead:
    ranked: int  # how many frames it ranked (its window at most)
    locked: list[Frame]  # those of them it locked, in hand-out order, with their jobs and scenes


def _node_round_read(node: WorkerNode, finishing: Finishing | None) -> tuple[WorkerNode | None, _PoolRead]:
    """A round of one node's first statement: this node, locked, with its reads loaded, if it is matchable
    (`matchable_nodes`) and, when `finishing`, that lease is as `Finishing` says (whose frame, job and kind it
    fills in); and, only then, the first read of the pool of the profile `node` shows (`_pool_rows`, leaving out
    the jobs it is kept off). (None, no read) when the node is not taken.

    The pool is read for the caller's copy of the node (the agent call's authentication, a moment ago): the
    caller compares that profile with the locked row's and reads again on the rare change."""
    lock = _node_lock_sql(connection.alias, finishing is not None)
    ops, now = connection.ops, timezone.now()
    values: list = [node.pk, ops.adapt_datetimefield_value(silent_cutoff(now))]
    if finishing is not None:
        values += [finishing.lease_id, ops.adapt_datetimefield_value(now), secret_hash(finishing.token)]
    rows = _pool_rows(
        _profile(node),
        1,
        _window(1, 0),
        skip=set(),
        kept_off=(),
        kept_off_of=node.pk,
        lead=(lock.statement, lock.statement.params_with(values)),
    )
    if not rows:
        return None, _PoolRead(0, [])
    locked = cast(WorkerNode, lock.reader.read(rows[0]))
    if finishing is not None:
        finishing.frame_id, finishing.job_id, finishing.kind = (getattr(locked, name) for name in _FINISHING_READ)
    return locked, _pool_parse(rows, at=lock.reader.width)


def _pool(
    profile: tuple,
    size: int,
    *,
    taken: set[int],
    kept_off: Collection[int] = (),
    kept_off_of: int | None = None,
    first: _PoolRead | None = None,
) -> list[Frame]:
    """Up to `size` queued frames fitting `profile`, locked, in hand-out order, none of `taken` nor of the jobs
    `kept_off` (or those node `kept_off_of` is kept off, `_kept_off_pairs`), with their jobs and scenes.
    `first`: the first read, done already (`_node_round_read`).

    An artist's n-th frame at a priority has turn n + (its frames rendering now); frames go out by priority,
    then turn, so equals alternate and the least busy artist goes first. One statement ranks a window of
    POOL_SPARE more than needed and locks the first free ones in that order, no more than needed (SKIP LOCKED
    passes over those concurrent rounds hold). When too many were held, the next read ranks twice as far, a few
    times at most.
    """
    pool: list[Frame] = []
    for attempt in range(POOL_TRIES):
        want, window = size - len(pool), _window(size - len(pool), attempt)
        skip = taken | {frame.pk for frame in pool}  # locked by this transaction: SKIP LOCKED would not pass them
        read = first or _pool_parse(
            _pool_rows(profile, want, window, skip=skip, kept_off=kept_off, kept_off_of=kept_off_of), at=0
        )
        first = None
        pool += read.locked
        if read.ranked < window or len(pool) >= size:
            return pool  # no more fitting frames, or the pool is full
    return pool


def _window(want: int, attempt: int) -> int:
    """How many frames the `attempt`-th read of a pool ranks (`_pool`)."""
    return (want + POOL_SPARE) << attempt


_FRAME_WIDTH, _JOB_WIDTH = len(Frame._meta.concrete_fields), len(Job._meta.concrete_fields)
# The scene as a lease reads it (`services.LEASE_SCENE_DEFERRED` left out).
_POOL_SCENE = [f for f in Scene._meta.concrete_fields if f.name not in services.LEASE_SCENE_DEFERRED]
_POOL_SCENE_FIELDS = tuple(f.attname for f in _POOL_SCENE)


@functools.cache
def _pool_sql(
    alias: str, profile: tuple, skipping: int, kept_off: int, kept_off_of: bool, lead: Compiled | None
) -> tuple[str, tuple]:
    """The pool statement of this shape: `skipping` frame ids passed over (any number: one array on Postgres),
    `kept_off` job ids left out, or the jobs of one node's `_kept_off_pairs` (`_pool_rows` passes the values);
    `lead`, a statement run first whose columns lead every row, the pool read only when it returns one. One row
    per frame locked, or one with no frame; each says how many were ranked. Also the parameters of its
    fitting-jobs part."""
    postgres = connections[alias].vendor == "postgresql"
    frames, jobs, scenes = Frame._meta.db_table, Job._meta.db_table, Scene._meta.db_table
    job_ids, job_params = _jobs_fitting_sql(alias, profile)
    skipped = ""
    if skipping:
        skipped = "AND f.id <> ALL(%s)" if postgres else f"AND f.id NOT IN ({', '.join(['%s'] * skipping)})"
    # Named in the text: the generic plan can read the partial index of queued frames instead of sorting each job's
    # queued frames (bench_pool).
    queued, leased = state_literal(FrameState.QUEUED), state_literal(FrameState.LEASED)
    # The node's price floor and the window's sizes as values no plan knows: a plan for the call's
    # values then costs what the cached generic plan does, and Postgres keeps running that one. When the plan for
    # the values looked cheaper (a third of a job's queued frames priced above a floor it cannot see, against all
    # of them), it planned the ~6,000-character statement again on every call: 1.3-1.7 ms of the server's CPU per
    # next lease (bench_dispatch with a history behind it).
    value = "(SELECT %s::bigint)" if postgres else "%s"
    frame_fits = f"f.state = {queued} AND f.price >= {value} {skipped}"
    where = f"j.id IN ({job_ids})"
    if kept_off:
        where += f" AND j.id NOT IN ({', '.join(['%s'] * kept_off)})"
    if kept_off_of:
        where += f" AND j.id NOT IN ({_kept_off_of_node_sql(alias).sql})"
    if lead is not None:
        where += " AND EXISTS (SELECT 1 FROM head)"  # checked once, before any frame is read
    if postgres:
        # Only each job's first `window` fitting frames can be among the first `window` ranked: read just
        # those (index frame_queued_by_job_number), not every queued frame, whose number grows with the queue.
        source = (
            f"{jobs} j CROSS JOIN LATERAL (SELECT f.id, f.job_id, f.number FROM {frames} f"
            f" WHERE f.job_id = j.id AND {frame_fits} ORDER BY f.number LIMIT {value}) f"
        )
    else:  # SQLite (`make run`) has no LATERAL: it ranks every fitting frame
        source = f"{frames} f JOIN {jobs} j ON j.id = f.job_id"
        where = f"{frame_fits} AND {where}"
    if postgres:  # the artist's kept count: a few rows, however many frames are leased (jobs.models.LeasedCount)
        busy = (
            f"LATERAL (SELECT SUM(c.frames) AS n FROM {LeasedCount._meta.db_table} c"
            f" WHERE c.owner_id = j.owner_id) b ON TRUE"
        )
    else:  # SQLite keeps no count: every leased frame is read
        busy = (
            f"(SELECT j2.owner_id, SUM(c.n) AS n FROM (SELECT f2.job_id, COUNT(*) AS n FROM {frames} f2"
            f" WHERE f2.state = {leased} GROUP BY f2.job_id) c JOIN {jobs} j2 ON j2.id = c.job_id"
            f" GROUP BY j2.owner_id) b ON b.owner_id = j.owner_id"
        )
    frame_cols = ", ".join(f"f.{f.column}" for f in Frame._meta.concrete_fields)
    job_cols = ", ".join(f"j.{f.column}" for f in Job._meta.concrete_fields)
    scene_cols = ", ".join(f"s.{f.column}" for f in _POOL_SCENE)
    order = "r.priority DESC, r.place, r.owner_id, r.id"  # the hand-out order (see `_pool`)
    lock = "FOR NO KEY UPDATE OF f SKIP LOCKED" if postgres else ""  # SQLite writers are serialised anyway
    materialized = "MATERIALIZED" if postgres else ""  # locks as it runs, whoever reads it
    # By their ids through the primary key: a join to the ranking drew a scan of every queued frame.
    ranked_ids = "f.id = ANY(ARRAY(SELECT id FROM ranked))" if postgres else "f.id IN (SELECT id FROM ranked)"
    with_lead = f"head AS {materialized} ({lead.sql})," if lead is not None else ""
    lead_cols, lead_row = ("head.*,", "head CROSS JOIN") if lead is not None else ("", "")
    sql = f"""
        WITH {with_lead} ranked AS (
            SELECT id, priority, turn + busy AS place, owner_id FROM (
                SELECT f.id, j.priority, j.owner_id,
                       ROW_NUMBER() OVER (PARTITION BY j.priority, j.owner_id ORDER BY f.job_id, f.number) AS turn,
                       COALESCE(b.n, 0) AS busy
                  FROM {source}
                  LEFT JOIN {busy}
                 WHERE {where}
            ) candidates
            WHERE turn <= {value} ORDER BY priority DESC, turn + busy, owner_id, id LIMIT {value}
        ), locked AS {materialized} (
            SELECT {frame_cols} FROM {frames} f JOIN ranked r ON r.id = f.id
             WHERE {ranked_ids} AND f.state = {queued}
             ORDER BY {order} LIMIT {value} {lock}
        )
        SELECT {lead_cols} n.ranked, {frame_cols}, {job_cols}, {scene_cols}
          FROM {lead_row} (SELECT COUNT(*) AS ranked FROM ranked) n
          LEFT JOIN locked f ON TRUE LEFT JOIN ranked r ON r.id = f.id
          LEFT JOIN {jobs} j ON j.id = f.job_id LEFT JOIN {scenes} s ON s.id = j.scene_id
         ORDER BY {order}
    """
    return sql, tuple(job_params)


def _pool_rows(
    profile: tuple,
    want: int,
    window: int,
    *,
    skip: set[int],
    kept_off: Collection[int],
    kept_off_of: int | None,
    lead: tuple[Compiled, list] | None = None,
) -> list[tuple]:
    """The rows of one read of the pool (`_pool_parse`): `want` locked frames at most among the first `window`
    ranked. `lead`: a statement and its parameters that lead it (`_pool_sql`)."""
    postgres = connection.vendor == "postgresql"
    kept = sorted(kept_off)
    lead_sql, lead_params = lead if lead is not None else (None, [])
    sql, job_params = _pool_sql(connection.alias, profile, len(skip), len(kept), kept_off_of is not None, lead_sql)
    frame_params = [profile[1], *([sorted(skip)] if postgres and skip else sorted(skip))]
    where_params = [*job_params, *kept]
    if kept_off_of is not None:
        statement = _kept_off_of_node_sql(connection.alias)
        where_params += statement.params_with([kept_off_of])
    if postgres:
        params = [*lead_params, *frame_params, window, *where_params]
    else:
        params = [*lead_params, *frame_params, *where_params]
    params += [window, window, want]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _pool_parse(rows: list[tuple], *, at: int) -> _PoolRead:
    """The pool read of `_pool_rows`' rows, whose pool columns start at `at`."""
    locked, db = [], connection.alias
    at_frame, at_job, at_scene = at + 1, at + 1 + _FRAME_WIDTH, at + 1 + _FRAME_WIDTH + _JOB_WIDTH
    for row in rows:
        if row[at_frame] is not None:  # else no frame was locked
            frame = instance(Frame, row[at_frame:at_job], using=db)
            frame.job = instance(Job, row[at_job:at_scene], using=db)
            frame.job.scene = instance(Scene, row[at_scene:], using=db, only=_POOL_SCENE_FIELDS)
            locked.append(frame)
    return _PoolRead(rows[0][at] if rows else 0, locked)


def _assign(nodes: list[WorkerNode], kept_off: dict[int, set[int]]) -> list[tuple[WorkerNode, Frame]]:
    """(node, frame) pairs (see the module's docstring)."""
    groups: dict[tuple, list[WorkerNode]] = defaultdict(list)
    for node in nodes:
        groups[_profile(node)].append(node)
    pairs, look_further = [], []
    taken: set[int] = set()  # pools of different groups may share frames
    for profile, members in groups.items():
        pool = _pool(profile, len(members), taken=taken)
        for node in members:
            frame = next((f for f in pool if f.pk not in taken and f.job_id not in kept_off.get(node.pk, ())), None)
            if frame is not None:
                taken.add(frame.pk)
                pairs.append((node, frame))
            elif kept_off.get(node.pk) and len(pool) == len(members):
                look_further.append(node)
    for node in look_further:  # rare: a node kept off every frame of its pool, which was cut short
        frame = next(iter(_pool(_profile(node), 1, taken=taken, kept_off=kept_off[node.pk])), None)
        if frame is not None:
            taken.add(frame.pk)
            pairs.append((node, frame))
    return pairs


def _assign_one(node: WorkerNode, finishing: Finishing | None) -> list[tuple[WorkerNode, Frame]]:
    """A round of one node: its lock and its pool's first read in one statement (`_node_round_read`), the pool
    leaving out the jobs it is kept off."""
    locked, read = _node_round_read(node, finishing)
    if locked is None:
        return []
    profile = _profile(locked)
    # When its owner changed what it takes since the caller read it, that read was not its own pool.
    first = read if profile == _profile(node) else None
    frame = next(iter(_pool(profile, 1, taken=set(), kept_off_of=locked.pk, first=first)), None)
    return [(locked, frame)] if frame is not None else []


def _with_canaries(pairs: list[tuple[WorkerNode, Frame]]) -> list[tuple[WorkerNode, Frame]]:
    """Canaries only replace real work, at the node's trust-dependent rate, so they look like real work."""
    chosen = {frame.pk for _, frame in pairs}
    for i, (node, _) in enumerate(pairs):
        canary = hooks.frame_substitute(node=node)
        if canary is not None and canary.pk not in chosen:
            chosen.add(canary.pk)
            pairs[i] = (node, canary)
    return pairs


def _lease_row(node: WorkerNode, frame: Frame, token: str) -> FrameLease:
    manifest = services.manifest_for(frame, node=node)
    upload = services.result_key_for(manifest=manifest, frame_id=frame.pk)
    return FrameLease(
        frame=frame,
        node=node,
        kind=FrameLease.Kind.RENDER,
        token_hash=secret_hash(token),
        manifest=manifest,
        result_key=upload,
        upload_key=upload,
        expires_at=timezone.now() + timedelta(seconds=heartbeats.lease_seconds()),
        sampled=hooks.lease_sampled(node=node, frame=frame, manifest=manifest),
    )


def _leases_insert(rows: list[FrameLease]) -> list[FrameLease]:
    """Store these new leases in one INSERT ... RETURNING id, written out: a round of one node runs it per frame,
    and `bulk_create` compiled it in more Python time than Postgres took to run it (issue 17)."""
    fields = [f for f in FrameLease._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(rows))
    params = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for row in rows for f in fields]
    with connection.cursor() as cur:
        cur.execute(f"INSERT INTO {FrameLease._meta.db_table} ({columns}) VALUES {values} RETURNING id", params)
        ids = [row[0] for row in cur.fetchall()]
    for row, pk in zip(rows, ids, strict=True):  # in VALUES order, as bulk_create relies on too
        row.pk, row._state.adding, row._state.db = pk, False, connection.alias
    return rows


def _round_nodes(limit: int) -> list[WorkerNode]:
    """Up to `limit` matchable nodes, locked (SKIP LOCKED), in id order from an id drawn at random between the
    lowest and the highest idle node's, wrapping round to the first: when idle nodes outnumber the frames, which
    ones are served changes from round to round (a node is first with a chance in proportion to the ids between it
    and the idle node before it), and the read walks the index (status, id), so it costs about `limit` nodes
    whatever the number idle. (Ordered by last heartbeat, which has no index, so that a heartbeat writes no index
    entry, every round sorted every idle node: 58 ms a round at 10,000 nodes in bench_dispatch's rounds mode.)"""
    ids = WorkerNode.objects.filter(status=WorkerNode.Status.IDLE).aggregate(low=Min("pk"), high=Max("pk"))
    if ids["low"] is None:
        return []
    start = random.randint(ids["low"], ids["high"])  # fairness, not secrecy
    matchable = _with_node_reads(services._locking(services.matchable_nodes()))
    nodes = list(matchable.filter(pk__in=_idle_window(">=", start, size=limit)).order_by("pk")[:limit])
    if len(nodes) < limit:
        window = _idle_window("<", start, size=limit - len(nodes))
        nodes += matchable.filter(pk__in=window).order_by("pk")[: limit - len(nodes)]
    return nodes


def _idle_window(compare: str, start: int, *, size: int) -> RawSQL:
    """The ids of the first idle nodes whose id is `compare` `start`, in id order, a few more than `size` (some may
    be silent, or held by another round): a range of the index (status, id), the status named in the text so that
    a prepared statement's generic plan reads that range and no other node. Filtered and locked in one statement,
    the matchable test's many conditions led the generic plan to expect one node and read and sort every idle
    node from the start instead."""
    assert compare in (">=", "<"), compare
    idle = state_literal(WorkerNode.Status.IDLE)
    return RawSQL(
        f"SELECT id FROM {WorkerNode._meta.db_table} WHERE status = {idle} AND id {compare} %s"
        f" ORDER BY status, id LIMIT {int(2 * size + POOL_SPARE)}",
        (start,),
    )


@subject_scope()  # many leases: each line names its own, none the caller's
@transaction.atomic
def leases_create(
    *, limit: int = conf.MATCH_ROUND, node: WorkerNode | None = None, finishing: Finishing | None = None
) -> list[services.Delivery]:
    """Lease queued frames to up to `limit` idle nodes (only `node` when given: its row is locked and checked
    again, it may have changed since the caller read it) in one round. Returns the deliveries made. `finishing`:
    `node`'s lease whose result is being uploaded, which does not make it busy here (`services.lease_next`)."""
    if node is None and not Frame.objects.filter(state=FrameState.QUEUED, job__is_canary=False).exists():
        return []  # nothing to hand out: lock no node (one node's round finds that out from its empty pool)
    if node is not None:
        pairs = _with_canaries(_assign_one(node, finishing))
    else:
        nodes = _round_nodes(limit)
        pairs = _with_canaries(_assign(nodes, _kept_off([n.pk for n in nodes]))) if nodes else []
    if not pairs:
        return []
    claimed = set(lifecycle.frames_lease(frame_ids=[frame.pk for _, frame in pairs]))
    pairs = [(node, frame) for node, frame in pairs if frame.pk in claimed]
    starting = {f.job_id for _, f in pairs if f.job.state == JobState.QUEUED}
    if starting:
        lifecycle.jobs_mark_running(job_ids=starting)
    tokens = [secrets.token_urlsafe(24) for _ in pairs]
    rows = [_lease_row(node, frame, token) for (node, frame), token in zip(pairs, tokens, strict=True)]
    leases = _leases_insert(rows)
    hooks.leases_granted(leases=leases)
    nodes_leased(nodes=[node for node, _ in pairs])  # their rows are locked here
    for lease in leases:  # one line per lease, as a single lease writes it: an operator follows a lease by its id
        log.info("event=lease_granted", extra=lease_fields(lease))
    deliveries = [
        services.Delivery(node_id=lease.node_id, lease_id=lease.pk, token=token, kind=lease.kind, lease=lease)
        for lease, token in zip(leases, tokens, strict=True)
    ]
    messages = [(d.node_id, {"lease": d.lease_id, "token": d.token, "kind": d.kind}) for d in deliveries]
    transaction.on_commit(lambda: queues.deliver_many(messages=messages))
    return deliveries


# --- after a report -------------------------------------------------------------------------


def results_check(*, leases: list[FrameLease]) -> dict[int, str]:
    """Check the frozen result of each of these render leases' frames against its digest before it is paid, and
    make the thumbnails the reports did not (frames reported before they were made there): {frame id: thumbnail
    key} of those made. A result that fails its digest or size check is refused (`services.frame_result_refuse`)
    and left out."""
    made = {}
    for lease in leases:
        frame = lease.frame
        if not frame.result_key:
            continue
        try:
            if frame.thumbnail_key:  # made by the report, from these bytes: only their digest is wanted
                blobs.blob_digest_check(frame.result_key, sha256=frame.result_sha256, max_bytes=conf.RESULT_MAX_BYTES)
                continue
            data = blobs.blob_read_checked(
                frame.result_key, sha256=frame.result_sha256, max_bytes=conf.RESULT_MAX_BYTES
            )
            size = expected_size(lease.manifest)
            png = result_summary(data, size=size, thumbnail_side=conf.THUMBNAIL_SIDE).thumbnail
        except (blobs.DigestMismatch, ValueError) as exc:
            services.frame_result_refuse(frame_id=frame.pk, result_key=frame.result_key, reason=str(exc))
            continue
        key = services.thumbnail_key_for(frame_id=frame.pk, sha256=frame.result_sha256)
        blobs.blob_put_named(key=key, data=png)  # a concurrent caller may store the same one
        made[frame.pk] = key
    return made
