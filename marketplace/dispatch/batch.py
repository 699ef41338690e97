"""Matching, set-oriented (the dispatch hot path, issue 17): one round leases many frames to many idle nodes in
a handful of statements, whatever their number. It is the only matcher: a `dispatch.match` round takes up to
`conf.MATCH_ROUND` nodes, and `services.lease_create_for_node` (a report's next lease) is a round of one node.

A round locks up to `limit` idle nodes (`services.matchable_nodes`, SKIP LOCKED), groups them by what they
can take (Blender series, price floor, VRAM), reads each group's pool of fitting queued frames in hand-out
order (highest priority first; among equals, round-robin over the artists, the one with the fewest frames
rendering first), locks the pool (SKIP LOCKED: concurrent rounds get disjoint frames), and hands each node the
first frame of its pool that it is not kept off (job-node blocks, abandoned jobs). A node kept off its whole
pool while the pool was cut short reads a pool of its own without those jobs. A node's canary draw replaces
its frame. Then one UPDATE claims every frame, one INSERT writes the leases, one UPDATE re-derives the nodes'
status, and one Redis pipeline delivers the messages after commit.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections import defaultdict
from collections.abc import Collection
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Case, Count, Q, Value, When
from django.db.models.expressions import RawSQL
from django.utils import timezone

from marketplace import blobs
from marketplace.accounts.tokens import secret_hash
from marketplace.dispatch import conf, hooks, queues, services
from marketplace.dispatch.manifests import expected_size
from marketplace.dispatch.models import FrameLease, JobNodeBlock
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.logs import lease_fields, subject_scope
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_status_sync
from render_kernels import image_from_bytes, thumbnail_png

log = logging.getLogger("dispatch")

LIVE_JOBS = (JobState.QUEUED, JobState.RUNNING)
POOL_TRIES = 4  # reads of a group's pool past frames concurrent rounds locked first
POOL_SPARE = 16  # ranked frames read beyond those needed, so that a read passes over frames others hold


def _profile(node: WorkerNode) -> tuple:
    """What decides which frames fit a node, apart from its own blocks: nodes alike share one frame pool."""
    vram = node.vram_mb if node.device_type != WorkerNode.Device.CPU and node.vram_mb else None
    return tuple(node.series), node.min_price_per_frame, vram


def _fitting_jobs(profile: tuple):
    """The live jobs whose frames fit `profile` (the frames also need state QUEUED and a price at its floor)."""
    series, _, vram = profile
    qs = Job.objects.filter(state__in=LIVE_JOBS, is_canary=False, blender_series__in=series)
    if vram:
        qs = qs.filter(Q(quote__vram_mb__isnull=True) | Q(quote__vram_mb__lte=vram))
    return qs


def _pool(profile: tuple, size: int, *, taken: set[int], kept_off: Collection[int] = ()) -> list[Frame]:
    """Up to `size` queued frames fitting `profile`, locked, in hand-out order, none of `taken`.

    An artist's n-th frame at a priority has turn n + (its frames rendering now); frames go out by priority,
    then turn, so equals alternate and the least busy artist goes first. The order is read without locks (a
    window function cannot lock rows), with POOL_SPARE more than needed; then the first free ones in that order
    are locked, no more than needed (SKIP LOCKED passes over those concurrent rounds hold). When too many were
    held, the next ones are read, a few times at most.
    """
    pool: list[Frame] = []
    skip = set(taken)
    for _ in range(POOL_TRIES):
        want = size - len(pool)
        order = _pool_order(profile, want + POOL_SPARE, skip=skip, kept_off=kept_off)
        free = Frame.objects.filter(pk__in=order, state=FrameState.QUEUED).order_by(_rank(order))
        pool += list(services._locking(free).select_related("job__scene")[:want])
        if len(order) < want + POOL_SPARE or len(pool) >= size:
            return pool  # no more fitting frames, or the pool is full
        skip.update(order)  # every one of them is taken or held
    return pool


def _rank(order: list[int]):
    """Sorts frames as `order` lists their ids: one array parameter on Postgres (a CASE of one arm per frame
    took a round of one node longer to build than to run), a CASE on SQLite, which has no arrays."""
    if connection.vendor == "postgresql":
        return RawSQL(f"array_position(%s::bigint[], {Frame._meta.db_table}.id)", (order,))
    return Case(*(When(pk=pk, then=Value(i)) for i, pk in enumerate(order)))


def _pool_order(profile: tuple, size: int, *, skip: set[int], kept_off: Collection[int]) -> list[int]:
    jobs_fitting = _fitting_jobs(profile).exclude(pk__in=kept_off) if kept_off else _fitting_jobs(profile)
    job_ids, job_params = jobs_fitting.values("pk").query.sql_with_params()
    frames, jobs = Frame._meta.db_table, Job._meta.db_table
    skipped = f"AND f.id NOT IN ({', '.join(['%s'] * len(skip))})" if skip else ""
    frame_fits = f"f.state = %s AND f.price >= %s {skipped}"
    frame_params = [FrameState.QUEUED, profile[1], *sorted(skip)]
    if connection.vendor == "postgresql":
        # Only each job's first `size` fitting frames can be among the first `size` of the ranking: read just
        # those (index frame_queued_by_job_number), not every queued frame, whose number grows with the queue.
        source = (
            f"{jobs} j CROSS JOIN LATERAL (SELECT f.id, f.job_id, f.number FROM {frames} f"
            f" WHERE f.job_id = j.id AND {frame_fits} ORDER BY f.number LIMIT %s) f"
        )
        source_params, where, where_params = [*frame_params, size], f"j.id IN ({job_ids})", job_params
    else:  # SQLite (`make run`) has no LATERAL: it ranks every fitting frame
        source, source_params = f"{frames} f JOIN {jobs} j ON j.id = f.job_id", []
        where, where_params = f"{frame_fits} AND j.id IN ({job_ids})", [*frame_params, *job_params]
    sql = f"""
        SELECT id FROM (
            SELECT f.id, j.priority, j.owner_id,
                   ROW_NUMBER() OVER (PARTITION BY j.priority, j.owner_id ORDER BY f.job_id, f.number) AS turn,
                   COALESCE(b.n, 0) AS busy
              FROM {source}
              LEFT JOIN (SELECT j2.owner_id, SUM(c.n) AS n
                           FROM (SELECT f2.job_id, COUNT(*) AS n FROM {frames} f2 WHERE f2.state = %s
                                  GROUP BY f2.job_id) c
                           JOIN {jobs} j2 ON j2.id = c.job_id GROUP BY j2.owner_id) b ON b.owner_id = j.owner_id
             WHERE {where}
        ) ranked
        WHERE turn <= %s ORDER BY priority DESC, turn + busy, owner_id LIMIT %s
    """
    with connection.cursor() as cur:
        cur.execute(sql, [*source_params, FrameState.LEASED, *where_params, size, size])
        return [row[0] for row in cur.fetchall()]


def _kept_off(node_ids: list[int]) -> dict[int, set[int]]:
    """node id -> jobs it gets no frames of: blocked after failures or refusals, or abandoned too often."""
    out: dict[int, set[int]] = defaultdict(set)
    blocked = JobNodeBlock.objects.filter(node_id__in=node_ids, failures__gte=conf.NODE_FAILURES_PER_JOB)
    abandoned = (
        FrameLease.objects.filter(node_id__in=node_ids, state__in=(FrameLease.State.EXPIRED, FrameLease.State.RELEASED))
        .values("node_id", "frame__job_id")
        .annotate(n=Count("id"))
        .filter(n__gte=conf.ABANDONS_PER_JOB)
    )
    # One statement for both: a round of one node (every report's next lease) runs this each time.
    both = blocked.values_list("node_id", "job_id").union(abandoned.values_list("node_id", "frame__job_id"))
    for node_id, job_id in both:
        out[node_id].add(job_id)
    return out


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
    # Canaries only replace real work, at the node's trust-dependent rate, so they look like real work.
    chosen = {frame.pk for _, frame in pairs}
    for i, (node, _) in enumerate(pairs):
        canary = hooks.frame_substitute(node=node)
        if canary is not None and canary.pk not in chosen:
            chosen.add(canary.pk)
            pairs[i] = (node, canary)
    return pairs


def _lease_row(node: WorkerNode, frame: Frame, token: str) -> FrameLease:
    manifest = services.manifest_for(frame, node=node)
    return FrameLease(
        frame=frame,
        node=node,
        kind=FrameLease.Kind.RENDER,
        token_hash=secret_hash(token),
        manifest=manifest,
        result_key=services.result_key_for(manifest=manifest, frame_id=frame.pk),
        expires_at=timezone.now() + timedelta(seconds=conf.LEASE_SECONDS),
    )


@subject_scope()  # many leases: each line names its own, none the caller's
@transaction.atomic
def leases_create(
    *, limit: int = conf.MATCH_ROUND, node_id: int | None = None, finishing_lease_id: int | None = None
) -> list[services.Delivery]:
    """Lease queued frames to up to `limit` idle nodes (only `node_id` when given) in one round. Returns the
    deliveries made. `finishing_lease_id`: `node_id`'s lease whose result is being uploaded, which does not
    make it busy here (`services.lease_next`)."""
    if node_id is None and not Frame.objects.filter(state=FrameState.QUEUED, job__is_canary=False).exists():
        return []  # nothing to hand out: lock no node (one node's round finds that out from its empty pool)
    matchable = services.matchable_nodes(finishing_lease_id=finishing_lease_id)
    matchable = matchable.filter(pk=node_id) if node_id is not None else matchable.order_by("last_heartbeat")
    nodes = list(services._locking(matchable).select_related("trust")[:limit])
    if not nodes:
        return []
    pairs = _assign(nodes, _kept_off([n.pk for n in nodes]))
    claimed = set(lifecycle.frames_lease(frame_ids=[frame.pk for _, frame in pairs]))
    pairs = [(node, frame) for node, frame in pairs if frame.pk in claimed]
    lifecycle.jobs_mark_running(job_ids={f.job_id for _, f in pairs if f.job.state == JobState.QUEUED})
    tokens = [secrets.token_urlsafe(24) for _ in pairs]
    rows = [_lease_row(node, frame, token) for (node, frame), token in zip(pairs, tokens, strict=True)]
    leases = FrameLease.objects.bulk_create(rows)
    node_status_sync(node_ids=[node.pk for node, _ in pairs])
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


def thumbnails_make(*, leases: list[FrameLease]) -> dict[int, str]:
    """Thumbnails of these render leases' frames that have none yet: {frame id: thumbnail key}. A result that
    fails its digest or size check on this read is refused (`services.frame_result_refuse`) and left out."""
    made = {}
    for lease in leases:
        frame = lease.frame
        if frame.thumbnail_key or not frame.result_key:
            continue
        try:
            data = blobs.blob_read_checked(
                frame.result_key, sha256=frame.result_sha256, max_bytes=conf.RESULT_MAX_BYTES
            )
            png = thumbnail_png(image_from_bytes(data, size=expected_size(lease.manifest)))
        except (blobs.DigestMismatch, ValueError) as exc:
            services.frame_result_refuse(frame_id=frame.pk, result_key=frame.result_key, reason=str(exc))
            continue
        key = f"thumbs/frame{frame.pk}-{frame.result_sha256[:16]}.png"
        blobs.blob_put_new(key=key, fileobj=io.BytesIO(png))  # taken: a concurrent caller stored the same one
        made[frame.pk] = key
    return made
