"""Settled frame pay matures from pending to available after the dispute window, unless disputed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.disputes.models import Dispute
from marketplace.disputes.services import dispute_decide, dispute_open
from marketplace.jobs.models import Frame
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import LedgerTransaction
from marketplace.ledger.services import fee_for
from marketplace.money import tokens
from marketplace.payments import tasks
from marketplace.payments.earnings import earnings_mature
from marketplace.payments.models import EarningMaturation
from tests.payments.helpers import M, available, pending, settled_frame

pytestmark = pytest.mark.django_db
PRICE = 10 * M
SHARE = PRICE - fee_for(PRICE)


def hours_ago(hours: float):
    return timezone.now() - timedelta(hours=hours)


def test_pay_stays_pending_inside_the_window_and_matures_after_it(artist, provider):
    young = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(71))
    old = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(73))
    assert pending(provider) == 2 * SHARE

    assert earnings_mature() == 1
    assert pending(provider) == SHARE and available(provider) == SHARE
    assert EarningMaturation.objects.get().frame_id == old.pk
    assert LedgerTransaction.objects.filter(idempotency_key=f"mature:frame:{old.pk}").exists()
    assert not LedgerTransaction.objects.filter(idempotency_key=f"mature:frame:{young.pk}").exists()
    assert ledger.ledger_total() == 0


def test_maturing_twice_moves_the_pay_once(artist, provider):
    settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(73))
    assert earnings_mature() == 1
    assert earnings_mature() == 0
    assert available(provider) == SHARE and pending(provider) == 0


def test_the_window_is_a_setting(settings, artist, provider):
    settings.DISPUTE_WINDOW_HOURS = 1
    settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(2))
    assert earnings_mature() == 1


def test_an_open_dispute_freezes_the_pay_until_it_is_rejected(artist, provider, admin_user):
    frame = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(70))
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason="The cube is missing its shadow.")
    later = timezone.now() + timedelta(hours=5)
    assert earnings_mature(now=later) == 0
    assert pending(provider) == SHARE

    dispute_decide(admin=admin_user, dispute_id=dispute.pk, decision=Dispute.State.REJECTED, note="Looks right.")
    assert earnings_mature(now=later) == 1
    assert available(provider) == SHARE


def test_the_beat_task_matures_due_pay(artist, provider):
    settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(80))
    tasks.mature_earnings.delay()
    assert available(provider) == SHARE


def test_the_earnings_page_shows_balances_and_each_frame(client, artist, provider):
    settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(80))
    settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(1))
    earnings_mature()
    client.force_login(provider)
    page = client.get("/payments/earnings/").content.decode()
    assert f'data-balance="provider_pending">{tokens(SHARE)}<' in page  # 9.00: amounts read with 2 decimals
    assert f'data-balance="provider_available">{tokens(SHARE)}<' in page
    assert "available</td>" in page and "pending until" in page


def test_the_earnings_page_lists_disputes_on_the_providers_frames(client, artist, provider):
    frame = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(1))
    dispute_open(artist=artist, frame_id=frame.pk, reason="The cube is missing its shadow.")
    client.force_login(provider)
    page = client.get("/payments/earnings/").content.decode()
    assert "Disputes on your frames" in page and "The cube is missing its shadow." in page
    assert "frozen: under dispute" in page


def test_a_fee_change_after_settlement_matures_what_was_really_paid(settings, artist, provider):
    settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(73))
    settings.PLATFORM_FEE_BPS = 2_500  # raised after the frame was paid at the old fee
    assert fee_for(PRICE) != PRICE - SHARE
    assert earnings_mature() == 1
    assert available(provider) == SHARE and pending(provider) == 0
    assert ledger.ledger_total() == 0


def test_the_earnings_page_shows_what_each_node_earned_per_hour_of_node_time(client, artist, provider, outsider):
    from marketplace.jobs.models import Frame
    from marketplace.payments.selectors import provider_node_rates

    a = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(1))
    b = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(1))
    c = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(1))
    Frame.objects.filter(pk=a.pk).update(render_seconds=1200.0)
    Frame.objects.filter(pk=b.pk).update(render_seconds=600.0, node=a.node)  # a's node: 2 frames in 30 min
    Frame.objects.filter(pk=c.pk).update(render_seconds=3600.0)  # c's node: 1 frame in an hour
    settled_frame(artist=artist, provider=outsider, price=PRICE, settled_at=hours_ago(1))  # not theirs
    rates = {r.node_id: r for r in provider_node_rates(provider=provider)}
    assert set(rates) == {a.node_id, c.node_id}
    assert (rates[a.node_id].frames, rates[a.node_id].earned_micro) == (2, 2 * SHARE)
    assert rates[a.node_id].per_hour_micro == 4 * SHARE and rates[c.node_id].per_hour_micro == SHARE
    client.force_login(provider)
    page = client.get("/payments/earnings/").content.decode()
    assert 'id="node-rates"' in page and "36.00 tokens/h" in page and "9.00 tokens/h" in page


# --- set-oriented maturation (issue 17) --------------------------------------------------------


def providers(n: int):
    from marketplace.accounts.models import User

    return [User.objects.create(username=f"provider{i}", role=User.Role.PROVIDER) for i in range(n)]


def test_frames_of_many_providers_mature_once_in_batches(artist):
    people = providers(3)
    frames = [
        settled_frame(artist=artist, provider=people[i % 3], price=PRICE, settled_at=hours_ago(80 - i))
        for i in range(7)
    ]
    young = settled_frame(artist=artist, provider=people[0], price=PRICE, settled_at=hours_ago(1))

    assert earnings_mature(batch=2) == 7  # four transactions, the last one short
    assert earnings_mature(batch=2) == 0
    assert [available(p) for p in people] == [3 * SHARE, 2 * SHARE, 2 * SHARE]
    assert [pending(p) for p in people] == [SHARE, 0, 0]  # the young frame's
    assert set(EarningMaturation.objects.values_list("frame_id", flat=True)) == {f.pk for f in frames}
    assert EarningMaturation.objects.filter(amount_micro=SHARE).count() == 7
    matured = dict(Frame.objects.values_list("pk", "pay_matured_at"))
    assert all(matured[f.pk] is not None for f in frames) and matured[young.pk] is None
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_frame_whose_provider_cannot_cover_its_share_is_left_and_the_others_mature(artist, provider, outsider):
    from marketplace.ledger.models import Account
    from marketplace.ledger.services import Leg, account_get, transfer

    short = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(80))
    others = [settled_frame(artist=artist, provider=outsider, price=PRICE, settled_at=hours_ago(79)) for _ in range(2)]
    # The provider's pending money went elsewhere meanwhile (an admin's correction): it no longer holds the share.
    transfer(
        key="correction:1",
        memo="correction",
        legs=[
            Leg(account_get(kind=Account.Kind.PROVIDER_PENDING, owner=provider), -1),
            Leg(account_get(kind=Account.Kind.PLATFORM_REVENUE), 1),
        ],
    )

    assert earnings_mature() == 2
    assert available(outsider) == 2 * SHARE and available(provider) == 0 and pending(provider) == SHARE - 1
    assert set(EarningMaturation.objects.values_list("frame_id", flat=True)) == {f.pk for f in others}
    assert Frame.objects.get(pk=short.pk).pay_matured_at is None  # still owed: the next run tries it again
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_settled_frame_that_left_its_provider_nothing_pending_does_not_hold_the_others_back(artist, provider):
    paid = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(80))
    # Settled with no posting to its provider (a row the settlement never paid): nothing to release, ever.
    unpaid = Frame.objects.create(
        job=paid.job, number=2, price=PRICE, state="settled", node=paid.node, settled_at=hours_ago(81)
    )
    later = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=hours_ago(75))

    assert earnings_mature(batch=1) == 2
    assert available(provider) == 2 * SHARE
    assert not EarningMaturation.objects.filter(frame=unpaid).exists()
    assert Frame.objects.get(pk=unpaid.pk).pay_matured_at is not None  # not read again by later runs
    assert {paid.pk, later.pk} == set(EarningMaturation.objects.values_list("frame_id", flat=True))
