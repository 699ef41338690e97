"""Admin decisions: uphold reverses the settlement exactly and re-queues the frame; reject releases the pay."""

import pytest
from django.db.models import Sum

from marketplace.disputes.models import AuditLog, Dispute
from marketplace.disputes.services import DisputeRefused, NotAdmin, dispute_decide, dispute_open
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.selectors import user_escrow_total
from marketplace.ledger.services import fee_for
from marketplace.verification.models import NodeTrust, TrustEvent
from tests.payments.helpers import M, balance, pending, settled_frame, wallet

pytestmark = pytest.mark.django_db
PRICE = 10 * M
FEE = fee_for(PRICE)
UPHELD, REJECTED = Dispute.State.UPHELD, Dispute.State.REJECTED


def open_dispute(artist, provider, **frame_kwargs) -> Dispute:
    frame = settled_frame(artist=artist, provider=provider, price=PRICE, **frame_kwargs)
    return dispute_open(artist=artist, frame_id=frame.pk, reason="Half the frame is missing.")


def revenue() -> int:
    return balance(Account.Kind.PLATFORM_REVENUE)


def test_upholding_reverses_the_settlement_in_one_transaction_and_holds_the_price_again(artist, provider, admin_user):
    dispute = open_dispute(artist, provider)
    assert (pending(provider), revenue(), wallet(artist), user_escrow_total(user=artist)) == (PRICE - FEE, FEE, 0, 0)

    dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=UPHELD, note="The lower half is black.")

    reversal = LedgerTransaction.objects.get(idempotency_key=f"dispute:{dispute.pk}:uphold")
    legs = {(p.account.kind, p.account.owner_id, p.amount) for p in reversal.postings.select_related("account")}
    assert legs == {
        (Account.Kind.PROVIDER_PENDING, provider.pk, -(PRICE - FEE)),
        (Account.Kind.PLATFORM_REVENUE, None, -FEE),
        (Account.Kind.ARTIST_WALLET, artist.pk, PRICE),
    }
    rehold = LedgerTransaction.objects.get(idempotency_key=f"dispute:{dispute.pk}:rehold")
    assert rehold.postings.aggregate(s=Sum("amount"))["s"] == 0
    assert (pending(provider), revenue(), wallet(artist), user_escrow_total(user=artist)) == (0, 0, 0, PRICE)
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []

    frame = Frame.objects.get(pk=dispute.frame_id)
    assert frame.state == FrameState.QUEUED
    assert frame.node is None and frame.settled_at is None and frame.result_key == ""
    event = TrustEvent.objects.get(node_id=dispute.node_id)
    assert event.kind == TrustEvent.Kind.DISPUTE_UPHELD and event.frame_id == frame.pk
    assert NodeTrust.objects.get(node_id=dispute.node_id).checks_failed == 1
    entry = AuditLog.objects.get(action="dispute.upheld")
    assert entry.actor == admin_user and entry.details["ledger"]["refund"] == f"dispute:{dispute.pk}:uphold"


def test_upholding_after_a_fee_change_reverses_what_the_settlement_posted(settings, artist, provider, admin_user):
    dispute = open_dispute(artist, provider)
    settings.PLATFORM_FEE_BPS = 0  # the fee changed after the frame was paid
    dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=UPHELD, note="The lower half is black.")
    assert (pending(provider), revenue(), wallet(artist), user_escrow_total(user=artist)) == (0, 0, 0, PRICE)
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_upholding_reopens_a_finished_job(artist, provider, admin_user):
    dispute = open_dispute(artist, provider, job_state=JobState.DONE)
    dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=UPHELD, note="Wrong.")
    assert Job.objects.get(pk=dispute.frame.job_id).state == JobState.RUNNING


def test_upholding_on_a_cancelled_job_refunds_the_artist_and_cancels_the_frame(artist, provider, admin_user):
    dispute = open_dispute(artist, provider, job_state=JobState.CANCELLED)
    dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=UPHELD, note="Wrong.")
    assert Frame.objects.get(pk=dispute.frame_id).state == FrameState.CANCELLED
    assert wallet(artist) == PRICE and user_escrow_total(user=artist) == 0
    assert not LedgerTransaction.objects.filter(idempotency_key=f"dispute:{dispute.pk}:rehold").exists()


def test_rejecting_leaves_the_money_and_the_frame_alone(artist, provider, admin_user):
    dispute = open_dispute(artist, provider)
    before = set(LedgerTransaction.objects.values_list("idempotency_key", flat=True))
    dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=REJECTED, note="The render matches.")
    dispute.refresh_from_db()
    assert dispute.state == REJECTED and dispute.decided_by == admin_user and dispute.decided_at
    assert set(LedgerTransaction.objects.values_list("idempotency_key", flat=True)) == before
    assert Frame.objects.get(pk=dispute.frame_id).state == FrameState.SETTLED
    assert pending(provider) == PRICE - FEE
    assert AuditLog.objects.filter(action="dispute.rejected").count() == 1


def test_a_double_click_is_one_decision(artist, provider, admin_user):
    dispute = open_dispute(artist, provider)
    for _ in range(2):
        dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=UPHELD, note="Wrong.")
    assert AuditLog.objects.filter(action="dispute.upheld").count() == 1
    assert TrustEvent.objects.count() == 1
    assert user_escrow_total(user=artist) == PRICE


def test_a_contrary_decision_after_the_first_is_refused(artist, provider, admin_user):
    dispute = open_dispute(artist, provider)
    dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=REJECTED, note="Fine.")
    with pytest.raises(DisputeRefused, match="already rejected"):
        dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=UPHELD, note="Wrong after all.")
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="dispute:").exists()


@pytest.mark.parametrize("who", ["artist", "provider", "outsider"])
def test_only_admins_decide(request, artist, provider, who):
    dispute = open_dispute(artist, provider)
    with pytest.raises(NotAdmin):
        dispute_decide(admin=request.getfixturevalue(who), dispute_id=dispute.pk, decision=UPHELD, note="mine")
    assert Dispute.objects.get().state == Dispute.State.OPEN


@pytest.mark.parametrize(
    ("decision", "note", "message"),
    [("refund_everything", "x", "uphold or to reject"), (UPHELD, "   ", "decision note")],
)
def test_it_refuses_a_bad_decision(artist, provider, admin_user, decision, note, message):
    dispute = open_dispute(artist, provider)
    with pytest.raises(DisputeRefused, match=message):
        dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=decision, note=note)
    assert (
        Dispute.objects.get().state == Dispute.State.OPEN
        and not AuditLog.objects.exclude(action="dispute.opened").exists()
    )


def test_a_failed_uphold_changes_nothing(artist, provider, admin_user):
    dispute = open_dispute(artist, provider)
    Frame.objects.filter(pk=dispute.frame_id).update(state=FrameState.QUEUED)  # moved under our feet
    with pytest.raises(DisputeRefused, match="frame changed"):
        dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=UPHELD, note="Wrong.")
    assert Dispute.objects.get().state == Dispute.State.OPEN
    assert pending(provider) == PRICE - FEE and not TrustEvent.objects.exists()
