from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.dispatch.models import FrameLease
from marketplace.dispatch.services import lease_create_for_node
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.services import (
    FundsInsufficient,
    JobNotFound,
    JobRefused,
    frame_settle,
    job_accept,
    job_cancel,
    job_finish_if_complete,
    job_quote,
)
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.services import account_get
from marketplace.payments.models import TopUp
from tests.fixtures.money import fund
from tests.jobs.conftest import M, rendered

pytestmark = pytest.mark.django_db


def wallet(user) -> int:
    return ledger.account_balance(account=account_get(kind=Account.Kind.ARTIST_WALLET, owner=user))


@pytest.fixture
def quoted(funded_artist, scene) -> Job:
    return job_quote(owner=funded_artist, scene=scene, frame_start=1, frame_end=5)


def test_accepting_holds_the_total_in_escrow_and_creates_priced_frames(funded_artist, quoted):
    before = wallet(funded_artist)
    job = job_accept(job_id=quoted.pk, owner=funded_artist)
    total = 5 * quoted.price_per_frame
    assert job.state == JobState.QUEUED and job.accepted_at is not None
    assert wallet(funded_artist) == before - total
    assert ledger.user_escrow_total(user=funded_artist) == total
    assert LedgerTransaction.objects.filter(idempotency_key=f"hold:job:{job.pk}").count() == 1
    frames = list(job.frames.order_by("number"))
    assert [f.number for f in frames] == [1, 2, 3, 4, 5]
    assert {(f.state, f.price) for f in frames} == {(FrameState.QUEUED, quoted.price_per_frame)}
    assert ledger.ledger_total() == 0


def test_accepting_twice_holds_once(funded_artist, quoted):
    job_accept(job_id=quoted.pk, owner=funded_artist)
    again = job_accept(job_id=quoted.pk, owner=funded_artist)
    assert again.state == JobState.QUEUED and again.frames.count() == 5
    assert ledger.user_escrow_total(user=funded_artist) == 5 * quoted.price_per_frame


def test_insufficient_funds_changes_nothing(artist, scene):
    fund(artist, 1)
    quote = job_quote(owner=artist, scene=scene)
    with pytest.raises(FundsInsufficient, match=r"needs .* tokens in your wallet"):
        job_accept(job_id=quote.pk, owner=artist)
    quote.refresh_from_db()
    assert quote.state == JobState.QUOTED and quote.accepted_at is None
    assert not Frame.objects.exists()
    assert wallet(artist) == 1 and ledger.user_escrow_total(user=artist) == 0
    fund(artist, 10 * M)  # after a top-up the same quote can be accepted
    assert job_accept(job_id=quote.pk, owner=artist).state == JobState.QUEUED


def test_a_frozen_wallet_cannot_accept(funded_artist, quoted):
    TopUp.objects.create(
        user=funded_artist,
        amount_cents=100,
        currency="usd",
        tokens_micro=10,
        provider="dev",
        clawed_back_micro=5,
        unrecovered_micro=5,
    )
    with pytest.raises(JobRefused, match="wallet owes tokens"):
        job_accept(job_id=quoted.pk, owner=funded_artist)
    assert Job.objects.get(pk=quoted.pk).state == JobState.QUOTED and not Frame.objects.exists()


def test_an_expired_quote_is_refused_and_moves_nothing(settings, funded_artist, quoted):
    settings.JOBS_QUOTE_VALID_HOURS = 24
    Job.objects.filter(pk=quoted.pk).update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    before = wallet(funded_artist)
    with pytest.raises(JobRefused, match=r"this quote expired at .* UTC \(quotes hold for 24 hours\): get a new"):
        job_accept(job_id=quoted.pk, owner=funded_artist)
    assert Job.objects.get(pk=quoted.pk).state == JobState.QUOTED and not Frame.objects.exists()
    assert wallet(funded_artist) == before and ledger.user_escrow_total(user=funded_artist) == 0
    fresh = job_quote(owner=funded_artist, scene=quoted.scene, frame_start=1, frame_end=5)
    assert job_accept(job_id=fresh.pk, owner=funded_artist).state == JobState.QUEUED


def test_a_quote_is_accepted_until_its_last_minute(settings, funded_artist, quoted):
    settings.JOBS_QUOTE_VALID_HOURS = 2
    Job.objects.filter(pk=quoted.pk).update(created_at=timezone.now() - timedelta(hours=1, minutes=59))
    assert job_accept(job_id=quoted.pk, owner=funded_artist).state == JobState.QUEUED


def test_another_artist_can_neither_accept_nor_cancel(outsider, funded_artist, quoted):
    with pytest.raises(JobNotFound):
        job_accept(job_id=quoted.pk, owner=outsider)
    with pytest.raises(JobNotFound):
        job_cancel(job_id=quoted.pk, owner=outsider)
    assert Job.objects.get(pk=quoted.pk).state == JobState.QUOTED


def test_cancelling_a_quote_holds_and_refunds_nothing(funded_artist, quoted):
    before = wallet(funded_artist)
    outcome = job_cancel(job_id=quoted.pk, owner=funded_artist)
    assert outcome.job.state == JobState.CANCELLED and outcome.refunded == 0
    assert wallet(funded_artist) == before
    with pytest.raises(JobRefused, match="cancelled and can no longer be accepted"):
        job_accept(job_id=quoted.pk, owner=funded_artist)


def test_cancel_refunds_exactly_the_unrendered_frames_and_is_idempotent(
    funded_artist, quoted, node, django_capture_on_commit_callbacks
):
    job = job_accept(job_id=quoted.pk, owner=funded_artist)
    price = job.price_per_frame
    before = wallet(funded_artist)
    delivery = lease_create_for_node(node=node)  # frame 1 is rendering
    frames = list(job.frames.order_by("number"))
    rendered(frames[1], node)
    Frame.objects.filter(pk=frames[2].pk).update(state=FrameState.VERIFYING, node=node)
    settled = rendered(frames[3], node)
    assert frame_settle(frame_id=settled.pk, node_id=node.pk)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = job_cancel(job_id=job.pk, owner=funded_artist)
    assert outcome.job.state == JobState.CANCELLED and outcome.frames_cancelled == 2 and outcome.refunded == 2 * price
    assert wallet(funded_artist) == before + 2 * price
    states = dict(job.frames.values_list("number", "state"))
    assert states == {
        1: FrameState.CANCELLED,
        2: FrameState.RENDERED,
        3: FrameState.VERIFYING,
        4: FrameState.SETTLED,
        5: FrameState.CANCELLED,
    }
    assert FrameLease.objects.get(pk=delivery.lease_id).state == FrameLease.State.REVOKED
    assert ledger.user_escrow_total(user=funded_artist) == 2 * price  # the two rendered frames stay payable

    again = job_cancel(job_id=job.pk, owner=funded_artist)
    assert again.refunded == 0 and wallet(funded_artist) == before + 2 * price
    assert LedgerTransaction.objects.filter(idempotency_key__startswith=f"refund:job:{job.pk}").count() == 1

    # The rendered frames settle later; then nothing is left in escrow and nothing more is refunded.
    with django_capture_on_commit_callbacks(execute=True):
        assert frame_settle(frame_id=frames[1].pk, node_id=node.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert frame_settle(frame_id=frames[2].pk, node_id=node.pk)
    assert ledger.user_escrow_total(user=funded_artist) == 0
    assert wallet(funded_artist) == before + 2 * price
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_rejected_frame_of_a_cancelled_job_is_refunded_instead_of_rendered_again(
    funded_artist, quoted, node, django_capture_on_commit_callbacks
):
    job = job_accept(job_id=quoted.pk, owner=funded_artist)
    frame = job.frames.get(number=1)
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.VERIFYING, node=node)
    before = wallet(funded_artist)
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job_id=job.pk, owner=funded_artist)
    assert ledger.user_escrow_total(user=funded_artist) == job.price_per_frame
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.QUEUED)  # verification sent it back
    assert job_finish_if_complete(job_id=job.pk) is True
    assert Frame.objects.get(pk=frame.pk).state == FrameState.CANCELLED
    assert wallet(funded_artist) == before + 5 * job.price_per_frame
    assert LedgerTransaction.objects.filter(idempotency_key=f"refund:job:{job.pk}:final:1").exists()
    assert job_finish_if_complete(job_id=job.pk) is False  # nothing left: nothing more happens


def test_a_finished_job_cannot_be_cancelled(funded_artist, quoted):
    job = job_accept(job_id=quoted.pk, owner=funded_artist)
    Job.objects.filter(pk=job.pk).update(state=JobState.DONE)
    with pytest.raises(JobRefused, match="already done"):
        job_cancel(job_id=job.pk, owner=funded_artist)
