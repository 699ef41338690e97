import pytest

from marketplace.jobs.models import Frame, Job
from marketplace.jobs.services import frame_settle, job_finish_if_complete
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.services import account_get, fee_for, hold_escrow
from tests.fixtures.market import make_queued_job
from tests.jobs.conftest import M, rendered

pytestmark = pytest.mark.django_db


def keys(prefix: str) -> list[str]:
    return sorted(
        LedgerTransaction.objects.filter(idempotency_key__startswith=prefix).values_list("idempotency_key", flat=True)
    )


def test_a_frame_is_paid_once(funded_artist, provider, node):
    job = make_queued_job(funded_artist, frames=2, price=2 * M)
    frame = rendered(job.frames.get(number=1), node)
    assert frame_settle(frame_id=frame.pk, node_id=node.pk) is True
    assert frame_settle(frame_id=frame.pk, node_id=node.pk) is False
    frame.refresh_from_db()
    assert frame.state == FrameState.SETTLED and frame.settle_count == 1 and frame.settled_at is not None
    assert keys(f"settle:frame:{frame.pk}") == [f"settle:frame:{frame.pk}"]
    pending = account_get(kind=Account.Kind.PROVIDER_PENDING, owner=provider)
    assert ledger.account_balance(account=pending) == 2 * M - fee_for(2 * M)
    assert ledger.user_escrow_total(user=funded_artist) == 2 * M
    assert ledger.ledger_total() == 0


def test_an_unrendered_frame_is_not_paid(funded_artist, node):
    frame = make_queued_job(funded_artist, frames=1).frames.get()
    assert frame_settle(frame_id=frame.pk, node_id=node.pk) is False
    assert keys("settle:") == []


def test_a_frame_paid_again_after_a_dispute_gets_a_new_key(funded_artist, node):
    job = make_queued_job(funded_artist, frames=1, price=M)
    frame = rendered(job.frames.get(), node)
    assert frame_settle(frame_id=frame.pk, node_id=node.pk)
    # An upheld dispute refunds it, holds the price again and re-queues the frame; it is rendered again.
    hold_escrow(artist=funded_artist, job_ref=job.escrow_ref, amount=M, key="dispute:1:rehold")
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.QUEUED)
    rendered(frame, node)
    assert frame_settle(frame_id=frame.pk, node_id=node.pk)
    assert Frame.objects.get(pk=frame.pk).settle_count == 2
    assert keys(f"settle:frame:{frame.pk}") == [f"settle:frame:{frame.pk}", f"settle:frame:{frame.pk}:2"]


def test_the_last_settled_frame_finishes_the_job_and_returns_the_remainder(
    funded_artist, node, django_capture_on_commit_callbacks
):
    job = make_queued_job(funded_artist, frames=3, price=M)
    frames = list(job.frames.order_by("number"))
    Frame.objects.filter(pk=frames[2].pk).update(state=FrameState.FAILED)  # its price is never spent
    wallet = account_get(kind=Account.Kind.ARTIST_WALLET, owner=funded_artist)
    before = ledger.account_balance(account=wallet)
    with django_capture_on_commit_callbacks(execute=True):
        frame_settle(frame_id=rendered(frames[0], node).pk, node_id=node.pk)
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED  # frame 2 is still open
    with django_capture_on_commit_callbacks(execute=True):
        frame_settle(frame_id=rendered(frames[1], node).pk, node_id=node.pk)
    job.refresh_from_db()
    assert job.state == JobState.DONE and job.finished_at is not None and job.finish_count == 1
    assert ledger.account_balance(account=wallet) == before + M
    assert ledger.user_escrow_total(user=funded_artist) == 0
    assert keys(f"refund:job:{job.pk}") == [f"refund:job:{job.pk}:final:1"]
    assert job_finish_if_complete(job_id=job.pk) is False


def test_a_job_reopened_by_a_dispute_refunds_its_leftover_again_under_a_new_key(
    funded_artist, node, django_capture_on_commit_callbacks
):
    job = make_queued_job(funded_artist, frames=2, price=M)
    first, second = job.frames.order_by("number")
    Frame.objects.filter(pk=second.pk).update(state=FrameState.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        frame_settle(frame_id=rendered(first, node).pk, node_id=node.pk)
    assert Job.objects.get(pk=job.pk).state == JobState.DONE
    # Upheld dispute: price held again, frame re-queued, job RUNNING; the re-render then fails everywhere.
    hold_escrow(artist=funded_artist, job_ref=job.escrow_ref, amount=M, key="dispute:9:rehold")
    Frame.objects.filter(pk=first.pk).update(state=FrameState.FAILED)
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
    assert job_finish_if_complete(job_id=job.pk) is True
    assert keys(f"refund:job:{job.pk}") == [f"refund:job:{job.pk}:final:1", f"refund:job:{job.pk}:final:2"]
    assert ledger.user_escrow_total(user=funded_artist) == 0


def test_a_job_with_no_frame_rendered_fails(funded_artist):
    job = make_queued_job(funded_artist, frames=2, price=M)
    job.frames.update(state=FrameState.FAILED)
    assert job_finish_if_complete(job_id=job.pk) is True
    job.refresh_from_db()
    assert job.state == JobState.FAILED and ledger.user_escrow_total(user=funded_artist) == 0
