"""The only writer of Frame.state and Job.state, and of the fields that move with them.

Every move is a conditional UPDATE (`WHERE state = <from>`) checked against the tables in `jobs.states`: when
another worker moved the row first, nothing is written and the function says so (False, or the ids that did
move), so the caller learns it lost the race instead of overwriting. A move joins the caller's transaction;
what other apps do about it runs after commit, as the Celery tasks subscribed to its event (`jobs.events`).

Rows are born in their models' default states (a Job QUOTED, a Frame QUEUED): an artist's frames by
`frames_create`, which tells dispatch; a canary's by verification, in a job still QUOTED.

Who calls what (docs/architecture.md, "The life of a frame"): dispatch leases, requeues, records renders and
fails frames; verification moves a frame to verifying, discards a refused result and settles (through
`jobs.services.frame_settle`, which pays); disputes reopen a settled frame; payments marks a settled frame's pay
matured; jobs accepts, cancels, retries and finishes jobs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from marketplace.compiled import placeholders, rows_query
from marketplace.jobs import events, extensions
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FRAME_TRANSITIONS, JOB_TRANSITIONS, FrameState, JobState, check_transition
from marketplace.nodes.services import node_status_sync

# What a frame forgets when its result is thrown away (refused, failed a check, disputed): it is rendered anew.
_RESULT_CLEARED = {"node": None, "result_key": "", "result_sha256": "", "thumbnail_key": "", "rendered_at": None}


def transition(model, *, pk: int, current: str, target: str, table: dict[str, frozenset[str]], **fields) -> bool:
    """Move one row from `current` to `target` if it is still in `current`. Raises on an illegal edge."""
    check_transition(table, current, target)
    if any(f.name == "updated_at" for f in model._meta.fields):
        fields.setdefault("updated_at", timezone.now())  # update() skips auto_now
    return model.objects.filter(pk=pk, state=current).update(state=target, **fields) == 1


def _frame_move(frame_id: int, current: str, target: str, **fields) -> bool:
    return transition(Frame, pk=frame_id, current=current, target=target, table=FRAME_TRANSITIONS, **fields)


@transaction.atomic(savepoint=False)  # joins the caller's transaction: no subtransaction holding the row locks
def _frames_move(frame_ids: Iterable[int], current: Iterable[str], target: str, **fields) -> list[int]:
    """Move every listed frame that is in one of `current` to `target`; the ids that moved, ascending. Their
    rows are locked first (ascending id, the jobs app's lock order), so the ids returned are exactly those
    written."""
    current = tuple(current)
    for state in current:
        check_transition(FRAME_TRANSITIONS, state, target)
    moved = list(
        Frame.objects.select_for_update(no_key=True)
        .filter(pk__in=list(frame_ids), state__in=current)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if moved:
        Frame.objects.filter(pk__in=moved).update(state=target, updated_at=timezone.now(), **fields)
    return moved


def _job_move(job_id: int, current: str, target: str, **fields) -> bool:
    return transition(Job, pk=job_id, current=current, target=target, table=JOB_TRANSITIONS, **fields)


# --- frames ---------------------------------------------------------------------------------


def frames_create(*, frames: list[Frame]) -> list[Frame]:
    """Store an accepted job's frames, born QUEUED. Emits frames_queued."""
    for frame in frames:
        frame.state = FrameState.QUEUED
    created = Frame.objects.bulk_create(frames)
    if created:
        events.emit(events.FRAMES_QUEUED, frame_ids=[frame.pk for frame in created])
    return created


def _requeue_fields(reason: str, count_attempt: bool) -> dict:
    fields: dict = {} if count_attempt else {"attempts": F("attempts") - 1}
    if reason:
        fields["last_error"] = reason[:2000]
    return fields


def frame_requeue(*, frame_id: int, reason: str = "", count_attempt: bool = True) -> bool:
    """LEASED -> QUEUED: the lease expired, failed, or was revoked (`reason` becomes the frame's last error), or
    it was given back (`count_attempt=False`: the attempt does not count). Emits frames_queued."""
    moved = _frame_move(frame_id, FrameState.LEASED, FrameState.QUEUED, **_requeue_fields(reason, count_attempt))
    if moved:
        events.emit(events.FRAMES_QUEUED, frame_ids=[frame_id])
    return moved


def frames_requeue(*, frame_ids: Collection[int], reason: str = "", count_attempt: bool = True) -> list[int]:
    """`frame_requeue` for many frames (a node's goodbye, a ban), written by one statement: their artists' kept
    counts of leased frames (`LeasedCount`, updated by that statement's trigger) are then locked in one order,
    as every other write of leased frames locks them. The ids that moved; emits frames_queued for them."""
    moved = _frames_move(frame_ids, (FrameState.LEASED,), FrameState.QUEUED, **_requeue_fields(reason, count_attempt))
    if moved:
        events.emit(events.FRAMES_QUEUED, frame_ids=moved)
    return moved


def frame_rendered(
    *,
    frame_id: int,
    node_id: int,
    result_key: str,
    result_sha256: str,
    render_seconds: float | None,
    thumbnail_key: str = "",
) -> bool:
    """LEASED -> RENDERED with the node's frozen result (and its thumbnail, when made already). False when the
    frame was cancelled meanwhile. Emits frame_rendered. (Written out: every report runs it, and the ORM compiled
    this UPDATE in more Python time than Postgres took to run it; bench_dispatch, issue 17.)"""
    check_transition(FRAME_TRANSITIONS, FrameState.LEASED, FrameState.RENDERED)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    values: list = [FrameState.RENDERED, node_id, result_key, result_sha256, render_seconds, thumbnail_key, now, now]
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {FRAMES} SET state = %s, node_id = %s, result_key = %s, result_sha256 = %s, render_seconds = %s,"
            " thumbnail_key = %s, rendered_at = %s, updated_at = %s WHERE id = %s AND state = %s",
            [*values, frame_id, FrameState.LEASED],
        )
        moved = cur.rowcount == 1
    if moved:
        events.emit(events.FRAME_RENDERED, frame_id=frame_id)
    return moved


def frame_verifying(*, frame_id: int) -> bool:
    """RENDERED -> VERIFYING: verification chose crops to check."""
    return _frame_move(frame_id, FrameState.RENDERED, FrameState.VERIFYING)


def frame_settle(*, frame_id: int, job_id: int, current: str, node_id: int) -> bool:
    """RENDERED or VERIFYING -> SETTLED, paid to `node_id`'s owner (the caller posts the payment under the
    frame's next settlement key, in the same transaction). Emits frame_settled."""
    moved = _frame_move(
        frame_id,
        current,
        FrameState.SETTLED,
        node_id=node_id,
        settled_at=timezone.now(),
        settle_count=F("settle_count") + 1,
    )
    if moved:
        events.emit(events.FRAME_SETTLED, frame_id=frame_id, job_id=job_id)
    return moved


def frame_fail(*, frame_id: int, job_id: int, current: str, error: str) -> bool:
    """LEASED (too many nodes failed it, or slower than calibrated) or VERIFYING (failed checks on too many
    nodes) -> FAILED. Emits frame_failed."""
    moved = _frame_move(frame_id, current, FrameState.FAILED, last_error=error[:4000])
    if moved:
        events.emit(events.FRAME_FAILED, frame_id=frame_id, job_id=job_id)
    return moved


def frame_result_discard(*, frame_id: int, current: str, reason: str | None) -> bool:
    """RENDERED or VERIFYING -> QUEUED, its result forgotten and unpaid: it failed a check, its stored copy was
    refused, or it was a canary. `reason` (None: keep the last error) tells the artist why. Emits
    frames_queued."""
    fields = dict(_RESULT_CLEARED)
    if reason is not None:
        fields["last_error"] = reason[:4000]
    moved = _frame_move(frame_id, current, FrameState.QUEUED, **fields)
    if moved:
        events.emit(events.FRAMES_QUEUED, frame_ids=[frame_id])
    return moved


def frames_retry(*, frame_ids: Iterable[int]) -> list[int]:
    """FAILED -> QUEUED at the artist's request; failures before now no longer count. Emits frames_queued."""
    moved = _frames_move(
        frame_ids, (FrameState.FAILED,), FrameState.QUEUED, attempts=0, retried_at=timezone.now(), last_error=""
    )
    if moved:
        events.emit(events.FRAMES_QUEUED, frame_ids=moved)
    return moved


@transaction.atomic(savepoint=False)  # its three steps commit together, or with the caller's transaction
def frames_cancel(*, frame_ids: Iterable[int], current: Iterable[str], reason: str) -> list[int]:
    """QUEUED or LEASED (whichever of `current`) -> CANCELLED. Their active leases end in the same transaction
    (dispatch, through jobs.extensions): a late report is refused, and the nodes are free at once."""
    current = tuple(current)
    # Leases first, then frames: the order a report and the reaper lock them (lease, then frame). Frames first
    # deadlocked a cancel against a report closing its lease (the agent reports while its next frame renders),
    # so the caller must not hold these frames' locks either. A frame rendered meanwhile is not cancelled; its
    # render lease was closed by its report already.
    wanted = list(Frame.objects.filter(pk__in=list(frame_ids), state__in=current).values_list("pk", flat=True))
    if not wanted:
        return []
    nodes = extensions.leases_revoke(frame_ids=wanted, skip_locked=False)
    moved = _frames_move(wanted, current, FrameState.CANCELLED, last_error=reason)
    # A frame leased between the two steps: its new lease ends too. Leases a report holds are passed over; that
    # report waits for the frame, then finds it cancelled.
    nodes += extensions.leases_revoke(frame_ids=moved, skip_locked=True)
    # The nodes last (lease, frame, node, as a report takes them): free at once, not "busy" on a cancelled frame.
    node_status_sync(node_ids=nodes)
    return moved


def frame_dispute_upheld(*, frame_id: int, rerender: bool) -> bool:
    """SETTLED -> QUEUED, its result forgotten: rendered again by another node (emits frames_queued), or, when
    the job renders nothing more (`rerender=False`), on to CANCELLED. False when the frame moved meanwhile."""
    if not _frame_move(frame_id, FrameState.SETTLED, FrameState.QUEUED, settled_at=None, **_RESULT_CLEARED):
        return False
    if rerender:
        events.emit(events.FRAMES_QUEUED, frame_ids=[frame_id])
    else:
        _frame_move(frame_id, FrameState.QUEUED, FrameState.CANCELLED)
    return True


# --- jobs -----------------------------------------------------------------------------------


def job_open(*, job_id: int) -> bool:
    """QUOTED -> QUEUED: accepted (or a canary whose answers are stored); its frames may be leased."""
    return _job_move(job_id, JobState.QUOTED, JobState.QUEUED, accepted_at=timezone.now())


def job_reopen(*, job_id: int, current: str) -> bool:
    """DONE or FAILED -> RUNNING: a retry of failed frames, or an upheld dispute, renders more."""
    return _job_move(job_id, current, JobState.RUNNING, finished_at=None)


def job_close(*, job_id: int, current: str, target: str) -> bool:
    """QUEUED or RUNNING -> DONE or FAILED, once no frame is open."""
    return _job_move(job_id, current, target, finished_at=timezone.now())


def job_cancel(*, job_id: int, current: str) -> bool:
    """QUOTED, QUEUED or RUNNING -> CANCELLED (the caller cancels the frames and refunds)."""
    return _job_move(job_id, current, JobState.CANCELLED, finished_at=timezone.now())


# --- many frames in one statement (the dispatch hot path, issue 17) --------------------------------------
# The same edges, checked against the same tables first; each write is a conditional UPDATE (`WHERE state =
# <from>`) that returns the rows it moved, so a caller that lost a race for some rows learns exactly which.

FRAMES = Frame._meta.db_table
JOBS = Job._meta.db_table


def frames_lease(*, frame_ids: Collection[int]) -> list[int]:
    """QUEUED -> LEASED (one attempt more) for these frames; returns the ids that moved."""
    check_transition(FRAME_TRANSITIONS, FrameState.QUEUED, FrameState.LEASED)
    ids = sorted(set(frame_ids))
    if not ids:
        return []
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {FRAMES} SET state = %s, attempts = attempts + 1, updated_at = %s "
            f"WHERE state = %s AND id IN ({placeholders(len(ids))}) RETURNING id",
            [FrameState.LEASED, timezone.now(), FrameState.QUEUED, *ids],
        )
        return [row[0] for row in cur.fetchall()]


def jobs_mark_running(*, job_ids: Collection[int]) -> int:
    """QUEUED -> RUNNING for those of these jobs that got their first lease; the others are left alone."""
    check_transition(JOB_TRANSITIONS, JobState.QUEUED, JobState.RUNNING)
    return Job.objects.filter(pk__in=set(job_ids), state=JobState.QUEUED).update(state=JobState.RUNNING)


def frames_verify(*, frame_ids: Collection[int]) -> int:
    """RENDERED -> VERIFYING: these frames' results were sampled for a check."""
    check_transition(FRAME_TRANSITIONS, FrameState.RENDERED, FrameState.VERIFYING)
    return Frame.objects.filter(pk__in=set(frame_ids), state=FrameState.RENDERED).update(
        state=FrameState.VERIFYING, updated_at=timezone.now()
    )


SETTLEABLE = (FrameState.RENDERED, FrameState.VERIFYING)


def frames_settle(*, node_of: Mapping[int, int]) -> dict[int, int]:
    """RENDERED or VERIFYING -> SETTLED, paid to the node `node_of[frame id]`, for these frames.

    Returns {frame id: its settle count now} for the frames that moved: the ones to pay. A frame that is no
    longer settleable (a concurrent settler got it first) is not in it. Emits frame_settled once per job.
    """
    for current in SETTLEABLE:
        check_transition(FRAME_TRANSITIONS, current, FrameState.SETTLED)
    if not node_of:
        return {}
    values, params = rows_query(sorted(node_of.items()), ("id", "node"))
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {FRAMES} SET state = %s, node_id = v.node, settled_at = %s, updated_at = %s, "
            f"settle_count = {FRAMES}.settle_count + 1 "
            f"FROM ({values}) AS v WHERE {FRAMES}.id = v.id AND {FRAMES}.state IN (%s, %s) "
            f"RETURNING {FRAMES}.id, {FRAMES}.settle_count, {FRAMES}.job_id",
            [FrameState.SETTLED, now, now, *params, *SETTLEABLE],
        )
        moved = cur.fetchall()
    # One frame_settled per job, not per frame: its subscriber (the job's finish check) reads the whole job.
    for job_id, frame_id in sorted({job_id: frame_id for frame_id, _, job_id in moved}.items()):
        events.emit(events.FRAME_SETTLED, frame_id=frame_id, job_id=job_id)
    return {frame_id: count for frame_id, count, _ in moved}


def frames_pay_matured(*, frame_ids: Collection[int], at) -> int:
    """Record that these settled frames' pay left the dispute window (payments.earnings matured it, or found
    nothing to release): maturation no longer reads them. Not a state change; only settled frames are marked."""
    if not frame_ids:
        return 0
    return Frame.objects.filter(pk__in=frame_ids, state=FrameState.SETTLED).update(pay_matured_at=at)


def frames_thumbnail_set(*, keys: Mapping[int, str]) -> None:
    """Record each frame's thumbnail (its page's row shows it). Not a state change."""
    if not keys:
        return
    values, params = rows_query(sorted(keys.items()), ("id", "thumb"))
    with transaction.atomic(), connection.cursor() as cur:
        # Rows locked in id order first, as settlers lock them: the UPDATE's own join order varies with its plan,
        # and two batches updating the same frames in different orders deadlocked (test_racing_settlers).
        locked = Frame.objects.select_for_update(no_key=True).filter(pk__in=keys).order_by("pk")
        list(locked.values_list("pk", flat=True))
        cur.execute(
            f"UPDATE {FRAMES} SET thumbnail_key = v.thumb, updated_at = %s "
            f"FROM ({values}) AS v WHERE {FRAMES}.id = v.id",
            [timezone.now(), *params],
        )
