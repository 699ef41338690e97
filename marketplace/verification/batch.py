"""What happens to many rendered frames at once: thumbnails, sampling, and settling the unsampled ones in one
transaction with one ledger call (the dispatch hot path, issue 17).

The batch form of step 1 of `services` (`frame_verify_or_settle` -> `_check_open` -> `_check_advance`):
each frame's result is sampled as `services.skip_reason` decides (mostly by the draw made at its lease); an
unsampled one gets its `skipped` check and is paid in the same transaction (`jobs.settlement_batch`); a sampled
one gets its crops check here and moves to VERIFYING, and `frame_verify_or_settle` then leases its crops, as do
canaries and frames a previous call left half-way (they are rare: the per-frame path handles them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from marketplace.compiled import instance, placeholders, read_in, rows_query, state_literal
from marketplace.dispatch.batch import results_check
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import lifecycle, settlement_batch
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.logs import subject_scope
from marketplace.verification import services
from marketplace.verification.models import CropCheck, FrameCheck, NodeTrust

log = logging.getLogger("verification")

FRAMES = Frame._meta.db_table
CHECKS = FrameCheck._meta.db_table
TRUSTS = NodeTrust._meta.db_table
TRUST_READ = ("check_rate", "raised_at")


def _render_leases(frame_ids: list[int]) -> dict[int, FrameLease]:
    """Each rendered frame's render lease whose result it holds (the latest, as `services._render_lease_of`).

    Two reads, each led by the ids it is given: as one join, Postgres' estimate of how many frames are RENDERED
    (from statistics taken while a job's frames were all queued, say) could make it scan every rendered frame
    once per lease.
    """
    frames = {f.pk: f for f in read_in(_rendered_frames, sorted(set(frame_ids)))}
    out: dict[int, FrameLease] = {}
    for lease in read_in(_done_render_leases, sorted(frames)):
        frame = frames[lease.frame_id]
        if lease.frame_id not in out and lease.result_key == frame.result_key:
            lease.frame = frame
            out[lease.frame_id] = lease
    return out


# Read with statements compiled once per count of ids (a batch holds at most DISPATCH_RENDERED_BATCH + 1 frames):
# every batch runs them, and a small farm's batch holds one frame, whose compile cost more than the rest of its
# reads (issue 17).
def _rendered_frames(ids: list[int]) -> QuerySet[Frame]:
    return Frame.objects.filter(pk__in=ids, state=FrameState.RENDERED).select_related("job")


def _done_render_leases(frame_ids: list[int]) -> QuerySet[FrameLease]:
    leases = FrameLease.objects.filter(frame_id__in=frame_ids, kind=FrameLease.Kind.RENDER, state=FrameLease.State.DONE)
    return leases.order_by("frame_id", "-id")


@dataclass(frozen=True)
class _Held:
    """A rendered frame this batch holds, and what its sampling reads: whether its render lease has a check
    already, and its node's check rate and when that last went up (None: the node has no trust row yet)."""

    frame_id: int
    node_id: int
    has_check: bool
    trust: NodeTrust | None

    def rate(self) -> tuple[float, datetime | None]:
        trust = self.trust or services.node_trust_get(node_id=self.node_id)  # created as the service does (rare)
        return trust.check_rate, trust.raised_at


def _held(leases: list[FrameLease], *, wait: bool) -> list[_Held]:
    """Lock these leases' frames that are still RENDERED, in id order, and read their checks and nodes' rates in the
    same statement (three reads before: one ORM compile and one round trip each, what a small farm's batch of one
    frame paid per frame, issue 17).

    `wait` False: SKIP LOCKED, a frame another settler holds is that settler's. The frames a call is for are
    waited for: a cancel or a job's finish holds a rendered frame's row for a moment too (`_job_finish` locks the
    open frames of a cancelled job), and passing over it left the frame unpaid. Postgres only; SQLite has one
    writer."""
    if not leases:
        return []
    values, params = rows_query([(x.frame_id, x.pk, x.node_id) for x in leases], ("frame", "lease", "node"))
    lock = ""
    if connection.vendor == "postgresql":
        lock = " FOR NO KEY UPDATE OF f" + ("" if wait else " SKIP LOCKED")
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT f.id, EXISTS (SELECT 1 FROM {CHECKS} c WHERE c.render_lease_id = v.lease), v.node,"
            f" t.check_rate, t.raised_at FROM ({values}) AS v JOIN {FRAMES} f ON f.id = v.frame"
            f" LEFT JOIN {TRUSTS} t ON t.node_id = v.node WHERE f.state = {state_literal(FrameState.RENDERED)}"
            f" ORDER BY f.id{lock}",
            params,
        )
        rows = cur.fetchall()
    return [
        _Held(
            frame_id,
            node_id,
            bool(has_check),
            # Built as the ORM builds one, with its converters (SQLite keeps times as text).
            None if rate is None else instance(NodeTrust, [rate, raised_at], using=connection.alias, only=TRUST_READ),
        )
        for frame_id, has_check, node_id, rate, raised_at in rows
    ]


@subject_scope()  # many frames: each line names its own, none the caller's (an agent call's lease)
def rendered_waiting(*, limit: int, besides: list[int]) -> list[int]:
    """Up to `limit` frames waiting in RENDERED other than `besides`, oldest first. Written out: every batch's task
    asks it first, mostly with one frame besides and none waiting (a small farm's batch, issue 17)."""
    besides = sorted(set(besides))
    skip = f" AND id NOT IN ({placeholders(len(besides))})" if besides else ""
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT id FROM {FRAMES} WHERE state = {state_literal(FrameState.RENDERED)}{skip} ORDER BY id LIMIT %s",
            [*besides, limit],
        )
        return [frame_id for (frame_id,) in cur.fetchall()]


def rendered_frames_process(*, frame_ids: list[int], waiting: list[int] | None = None) -> list[int]:
    """Check the results against their digests (thumbnailing those the reports did not), sample, and settle the
    unsampled of these rendered frames (`frame_ids`, and those of `waiting` no other caller holds); returns the
    ids settled here.

    Safe to call again, and concurrently: frames already handled are left alone; a frame of `frame_ids` another
    transaction holds is waited for, one of `waiting` left to its holder.
    """
    asked = set(frame_ids)
    waiting = [f for f in waiting or [] if f not in asked]
    leases = _render_leases([*frame_ids, *waiting])
    for frame_id in {*frame_ids, *waiting} - leases.keys():
        frame_state = Frame.objects.filter(pk=frame_id).values_list("state", flat=True).first()
        if frame_state == FrameState.RENDERED:  # its render lease is missing: as frame_verify_or_settle logs it
            log.error("event=verify_no_lease", extra={"frame_id": frame_id})
    lifecycle.frames_thumbnail_set(keys=results_check(leases=[x for x in leases.values()]))
    later: list[int] = []  # frames the per-frame path takes on after this commit
    with transaction.atomic():
        # Its own frames first, then the others: a settler waits only while it holds no frame.
        own = [leases[f] for f in sorted(leases.keys() & asked)]
        others = [leases[f] for f in sorted(leases.keys() - asked)]
        held = {h.frame_id: h for h in [*_held(own, wait=True), *_held(others, wait=False)]}
        fresh = [h for f, h in sorted(held.items()) if not h.has_check and not leases[f].frame.job.is_canary]
        later += sorted(held.keys() - {h.frame_id for h in fresh})
        now = timezone.now()
        checks = []
        for h in fresh:
            lease = leases[h.frame_id]
            rate, raised_at = h.rate()
            reason = services.skip_reason(lease=lease, rate=rate, raised_at=raised_at)
            kind, state = (
                (FrameCheck.Kind.SKIPPED, FrameCheck.State.SKIPPED)
                if reason
                else (FrameCheck.Kind.CROPS, FrameCheck.State.PENDING)
            )
            checks.append(
                FrameCheck(
                    frame_id=lease.frame_id,
                    render_lease=lease,
                    node_id=lease.node_id,
                    check_rate=rate,
                    kind=kind,
                    state=state,
                    reason=reason,
                    decided_at=now if reason else None,
                )
            )
        FrameCheck.objects.bulk_create(checks)
        sampled = [check for check in checks if check.kind == FrameCheck.Kind.CROPS]
        if sampled:
            crops = services.sample_crops(leases=[check.render_lease for check in sampled])
            CropCheck.objects.bulk_create(
                CropCheck(frame_check=check, crop=crop) for check in sampled for crop in crops[check.render_lease_id]
            )
            lifecycle.frames_verify(frame_ids=[check.frame_id for check in sampled])
            later += [check.frame_id for check in sampled]
        skipped = [check for check in checks if check.kind == FrameCheck.Kind.SKIPPED]
        settled = settlement_batch.frames_settle(
            node_of={check.frame_id: check.node_id for check in skipped},
            lease_of={check.frame_id: check.render_lease_id for check in skipped},
        )
    for frame_id in later:  # canaries, sampled frames (their crops are leased now), half-done ones
        services.frame_verify_or_settle(frame_id=frame_id)
    return settled
