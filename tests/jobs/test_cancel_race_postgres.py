"""A cancel racing a report, on separate Postgres connections: both take the lease before the frame, so the cancel
waits for the report instead of deadlocking with it (clean-clone CI, session 6: the add-on's cancel answered 500
while the agent reported the job's first frame)."""

import threading
import time

import pytest

from marketplace.dispatch import services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.services import job_cancel
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.nodes.models import WorkerNode
from tests.dispatch.test_results_immutable import lease_one, put, report
from tests.fixtures.market import make_node, make_queued_job, png_bytes
from tests.fixtures.race import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]
HOLD_S = 1.5  # longer than Postgres' deadlock_timeout (1 s), so a deadlock would be found and one side killed


def test_a_cancel_while_a_report_holds_its_lease_waits_for_the_report(funded_artist, provider, monkeypatch):
    job = make_queued_job(funded_artist, frames=2)
    node, token = make_node(provider, unchecked=True)  # its frames settle at the report
    assert services.match_frames() == 1
    msg, details = lease_one(node, token)
    assert put(details["upload_url"], png_bytes(32, 24)).status_code == 201
    reported_frame = FrameLease.objects.get(pk=msg["lease"]).frame_id

    report_holds_its_lease = threading.Event()
    frame_rendered = lifecycle.frame_rendered

    def frame_rendered_late(**fields):  # the report has closed its lease (row locked) and is about to move the frame
        report_holds_its_lease.set()
        time.sleep(HOLD_S)  # the cancel runs meanwhile
        return frame_rendered(**fields)

    monkeypatch.setattr(lifecycle, "frame_rendered", frame_rendered_late)

    def side(i: int):
        if i == 0:
            return report(token, msg)
        assert report_holds_its_lease.wait(10)
        return job_cancel(job_id=job.pk, owner=funded_artist)

    reported, cancelled = race(side, 2)
    assert not isinstance(reported, Exception) and not isinstance(cancelled, Exception), (reported, cancelled)
    assert reported.status_code == 200 and reported.json()["accepted"] is True, reported.content
    # The report came first: its frame is rendered work, paid; only the queued frame is cancelled and refunded.
    other = Frame.objects.exclude(pk=reported_frame).get(job=job)
    assert cancelled.frames_cancelled == 1 and cancelled.refunded == other.price
    assert Frame.objects.get(pk=reported_frame).state == FrameState.SETTLED
    assert other.state == FrameState.CANCELLED
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
    assert FrameLease.objects.get(pk=msg["lease"]).state == FrameLease.State.DONE
    assert WorkerNode.objects.get(pk=node.pk).status == WorkerNode.Status.IDLE
    assert ledger.user_escrow_total(user=funded_artist) == 0  # one frame paid, one refunded
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_cancels_and_reports_of_many_frames_at_once_neither_deadlock_nor_pay_a_cancelled_frame(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=6)
    held = []
    for n in range(6):
        node, token = make_node(provider, name=f"rig-{n}", unchecked=True)
        assert services.lease_create_for_node(node=node)
        msg, details = lease_one(node, token)
        assert put(details["upload_url"], png_bytes(32, 24, seed=n)).status_code == 201
        held.append((token, msg))

    def side(i: int):
        return job_cancel(job_id=job.pk, owner=funded_artist) if i == len(held) else report(*held[i])

    results = race(side, len(held) + 1)
    assert not any(isinstance(r, Exception) for r in results), results
    *reports, cancelled = results
    assert all(r.status_code in (200, 409) for r in reports), [r.content for r in reports]
    accepted = [r.status_code == 200 and r.json()["accepted"] for r in reports]
    frames = Frame.objects.filter(job=job)
    # Each frame is either paid (its report won) or cancelled and refunded (the cancel won), never both.
    assert frames.filter(state=FrameState.SETTLED).count() == sum(a is True for a in accepted)
    assert (
        frames.filter(state=FrameState.CANCELLED).count()
        == cancelled.frames_cancelled
        == 6 - sum(a is True for a in accepted)
    )
    assert cancelled.refunded == sum(frames.filter(state=FrameState.CANCELLED).values_list("price", flat=True))
    assert not FrameLease.objects.filter(frame__job=job, state=FrameLease.State.ACTIVE).exists()
    assert ledger.user_escrow_total(user=funded_artist) == 0
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_revoke_for_cancelled_frames_leaves_crop_leases_alone(funded_artist, provider):
    # A frame rendered and sampled between the cancel's read and its revoke is not cancelled; its crops go on.
    from datetime import timedelta

    from django.utils import timezone

    job = make_queued_job(funded_artist, frames=1)
    frame = job.frames.get()
    node, _ = make_node(provider)
    crop = FrameLease.objects.create(
        frame=frame,
        node=node,
        kind=FrameLease.Kind.VERIFY,
        token_hash="0" * 64,
        manifest={},
        result_key="results/crop.png",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert services.leases_revoke_for_frames(frame_ids=[frame.pk]) == []
    assert FrameLease.objects.get(pk=crop.pk).state == FrameLease.State.ACTIVE


def test_a_cancel_takes_leases_then_frames_then_nodes_as_a_report_does(funded_artist, provider):
    """The locks that keep a cancel and a report from deadlocking, whatever their timing: a report closes
    its lease, moves its frame, then syncs its node, so a cancel must not lock a node before the frames (it did:
    its first revoke synced the nodes at once, and a lease made and reported within that instant would have
    deadlocked on frame against node)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    job = make_queued_job(funded_artist, frames=3)
    nodes = [make_node(provider, name=f"n{i}", unchecked=True)[0] for i in range(2)]
    assert services.match_frames() == 2
    with CaptureQueriesContext(connection) as queries:
        job_cancel(job_id=job.pk, owner=funded_artist)
    sql = [q["sql"] for q in queries.captured_queries]

    def first(predicate) -> int:
        return next(i for i, s in enumerate(sql) if predicate(s))

    lease_lock = first(lambda s: '"dispatch_framelease"' in s and "UPDATE OF" in s)
    frame_lock = first(lambda s: s.startswith('SELECT "jobs_frame"."id"') and " FOR " in s)
    node_write = first(lambda s: s.startswith('UPDATE "nodes_workernode"'))
    assert lease_lock < frame_lock < node_write, sql
    # Its row locks on leases, frames and the job are FOR NO KEY UPDATE (it changes no key): a settlement inserting
    # a check that references a lease or frame (a foreign-key KEY SHARE) is not made to wait on them.
    tables = ('"dispatch_framelease"', '"jobs_frame"', '"jobs_job"')
    locks = [s for s in sql if " FOR " in s and "UPDATE" in s.split(" FOR ", 1)[1] and any(t in s for t in tables)]
    assert len(locks) >= 3 and all("FOR NO KEY UPDATE" in s for s in locks), locks
    assert set(WorkerNode.objects.filter(pk__in=[n.pk for n in nodes]).values_list("status", flat=True)) == {
        WorkerNode.Status.IDLE
    }
    assert not FrameLease.objects.filter(state=FrameLease.State.ACTIVE).exists()
