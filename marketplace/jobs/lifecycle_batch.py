"""Set-oriented Frame and Job state writes: one statement moves many rows (the dispatch hot path, issue 17).

The rules are `jobs.states`' (every edge is checked against its table first); each write is a conditional
UPDATE (`WHERE state = <from>`) that returns the rows it moved, so a caller that lost a race for some rows
learns exactly which ones, as `states.transition` tells it for one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from django.db import connection
from django.utils import timezone

from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FRAME_TRANSITIONS, JOB_TRANSITIONS, FrameState, JobState, check_transition

FRAMES = Frame._meta.db_table
JOBS = Job._meta.db_table


def _rows(rows: list[tuple], names: tuple[str, ...]) -> tuple[str, list]:
    """A query yielding these rows under these column names, and its parameters. (Not `VALUES … AS v(a, b)`:
    SQLite, `make run`'s database, names no VALUES columns.)"""
    first = "SELECT " + ", ".join(f"%s AS {name}" for name in names)
    rest = " UNION ALL SELECT " + ", ".join(["%s"] * len(names))
    return first + rest * (len(rows) - 1), [x for row in rows for x in row]


def frames_lease(*, frame_ids: Collection[int]) -> list[int]:
    """QUEUED -> LEASED (one attempt more) for these frames; returns the ids that moved."""
    check_transition(FRAME_TRANSITIONS, FrameState.QUEUED, FrameState.LEASED)
    ids = sorted(set(frame_ids))
    if not ids:
        return []
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {FRAMES} SET state = %s, attempts = attempts + 1, updated_at = %s "
            f"WHERE state = %s AND id IN ({marks}) RETURNING id",
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
    longer settleable (a concurrent settler got it first) is not in it.
    """
    for current in SETTLEABLE:
        check_transition(FRAME_TRANSITIONS, current, FrameState.SETTLED)
    if not node_of:
        return {}
    values, params = _rows(sorted(node_of.items()), ("id", "node"))
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {FRAMES} SET state = %s, node_id = v.node, settled_at = %s, updated_at = %s, "
            f"settle_count = {FRAMES}.settle_count + 1 "
            f"FROM ({values}) AS v WHERE {FRAMES}.id = v.id AND {FRAMES}.state IN (%s, %s) "
            f"RETURNING {FRAMES}.id, {FRAMES}.settle_count",
            [FrameState.SETTLED, now, now, *params, *SETTLEABLE],
        )
        return dict(cur.fetchall())


def frames_thumbnail_set(*, keys: Mapping[int, str]) -> None:
    """Record each frame's thumbnail (its page's row shows it). Not a state change."""
    if not keys:
        return
    values, params = _rows(sorted(keys.items()), ("id", "thumb"))
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {FRAMES} SET thumbnail_key = v.thumb, updated_at = %s "
            f"FROM ({values}) AS v WHERE {FRAMES}.id = v.id",
            [timezone.now(), *params],
        )
