"""Dispute races between real concurrent connections (Postgres)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.disputes.models import AuditLog, Dispute
from marketplace.disputes.services import DisputeRefused, dispute_decide, dispute_open
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import LedgerTransaction
from marketplace.ledger.services import fee_for
from marketplace.payments.earnings import earnings_mature
from marketplace.payments.models import EarningMaturation
from tests.fixtures.race import race
from tests.payments.helpers import M, available, pending, settled_frame

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PRICE = 10 * M
ADMINS = 8


def test_concurrent_decisions_one_wins(artist, provider, admin_user):
    frame = settled_frame(artist=artist, provider=provider, price=PRICE)
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="The cube is upside down.")
    decisions = [Dispute.State.UPHELD, Dispute.State.REJECTED] * (ADMINS // 2)

    results = race(
        lambda i: dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=decisions[i], note=f"admin {i}"),
        ADMINS,
    )

    dispute.refresh_from_db()
    assert AuditLog.objects.exclude(action="dispute.opened").count() == 1
    winners = [r for r in results if isinstance(r, Dispute)]
    losers = [r for r in results if isinstance(r, DisputeRefused)]
    assert len(winners) + len(losers) == ADMINS, results
    assert all(w.state == dispute.state for w in winners)  # the winner and its double-clicks
    assert len(losers) == ADMINS // 2  # every contrary decision was refused
    refunds = LedgerTransaction.objects.filter(idempotency_key__startswith=f"dispute:{dispute.pk}:uphold").count()
    assert refunds == (1 if dispute.state == Dispute.State.UPHELD else 0)
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_dispute_racing_the_maturation_never_lets_both_win(artist, provider):
    frame = settled_frame(
        artist=artist,
        provider=provider,
        price=PRICE,
        settled_at=timezone.now() - timedelta(hours=71, minutes=59, seconds=59),
    )
    beat = timezone.now() + timedelta(hours=1)  # the beat runs as the window closes

    def contender(i: int):
        if i == 0:
            return earnings_mature(now=beat)
        return dispute_open(artist=artist, frame_id=frame.pk, reason="Spotted a missing object.")

    results = race(contender, 2)
    matured = EarningMaturation.objects.filter(frame=frame).exists()
    disputed = Dispute.objects.filter(frame=frame).exists()
    assert matured != disputed, results
    share = PRICE - fee_for(PRICE)
    assert (pending(provider), available(provider)) == ((0, share) if matured else (share, 0))
