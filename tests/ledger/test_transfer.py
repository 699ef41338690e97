import pytest

from marketplace.ledger import selectors
from marketplace.ledger.models import Account, LedgerTransaction, Posting
from marketplace.ledger.services import (
    IdempotencyKeyReused,
    InsufficientFunds,
    LedgerError,
    Leg,
    UnbalancedTransaction,
    account_get,
    fee_for,
    hold_escrow,
    refund_escrow,
    release_escrow,
    transfer,
)
from tests.fixtures.money import fund

pytestmark = pytest.mark.django_db
Kind = Account.Kind
M = 1_000_000


def wallet(user) -> Account:
    return account_get(kind=Kind.ARTIST_WALLET, owner=user)


def test_it_moves_money_and_keeps_the_ledger_at_zero(artist, outsider):
    fund(artist, 10 * M)
    transfer(key="t1", memo="gift", legs=[Leg(wallet(artist), -3 * M), Leg(wallet(outsider), 3 * M)])
    assert selectors.account_balance(account=wallet(artist)) == 7 * M
    assert selectors.account_balance(account=wallet(outsider)) == 3 * M
    assert selectors.ledger_total() == 0
    assert selectors.ledger_drift() == []


def test_it_refuses_an_unbalanced_transaction(artist, outsider):
    fund(artist, 10 * M)
    with pytest.raises(UnbalancedTransaction):
        transfer(key="u", memo="bad", legs=[Leg(wallet(artist), -3 * M), Leg(wallet(outsider), 2 * M)])
    assert not LedgerTransaction.objects.filter(idempotency_key="u").exists()


@pytest.mark.parametrize("amount", [1.5, 3.0, True, "3"])
def test_it_refuses_non_integer_money(artist, outsider, amount):
    fund(artist, 10 * M)
    with pytest.raises(LedgerError, match="integer micro-tokens"):
        transfer(key="f", memo="float", legs=[Leg(wallet(artist), amount), Leg(wallet(outsider), amount)])


def test_it_refuses_an_overdraft_and_posts_nothing(artist, outsider):
    fund(artist, 1 * M)
    before = Posting.objects.count()
    with pytest.raises(InsufficientFunds):
        transfer(key="o", memo="too much", legs=[Leg(wallet(artist), -2 * M), Leg(wallet(outsider), 2 * M)])
    assert Posting.objects.count() == before
    assert not LedgerTransaction.objects.filter(idempotency_key="o").exists()
    assert selectors.account_balance(account=wallet(artist)) == 1 * M


def test_a_replayed_key_returns_the_first_transaction_and_posts_once(artist, outsider):
    fund(artist, 10 * M)
    legs = [Leg(wallet(artist), -1 * M), Leg(wallet(outsider), 1 * M)]
    first = transfer(key="k", memo="once", legs=legs)
    second = transfer(key="k", memo="once", legs=legs)
    assert first.pk == second.pk
    assert selectors.account_balance(account=wallet(outsider)) == 1 * M


def test_a_key_reused_for_other_postings_is_refused(artist, outsider):
    fund(artist, 10 * M)
    transfer(key="k", memo="once", legs=[Leg(wallet(artist), -1 * M), Leg(wallet(outsider), 1 * M)])
    with pytest.raises(IdempotencyKeyReused):
        transfer(key="k", memo="other", legs=[Leg(wallet(artist), -2 * M), Leg(wallet(outsider), 2 * M)])
    assert selectors.account_balance(account=wallet(outsider)) == 1 * M


def test_escrow_hold_release_refund(artist, provider, settings):
    settings.PLATFORM_FEE_BPS = 1000
    fund(artist, 10 * M)
    hold_escrow(artist=artist, job_ref="job:1", amount=5 * M, key="hold:1")
    assert selectors.account_balance(account=wallet(artist)) == 5 * M
    release_escrow(artist=artist, job_ref="job:1", provider=provider, amount=2 * M, key="settle:frame:1")
    release_escrow(artist=artist, job_ref="job:1", provider=provider, amount=2 * M, key="settle:frame:1")
    pending = account_get(kind=Kind.PROVIDER_PENDING, owner=provider)
    revenue = account_get(kind=Kind.PLATFORM_REVENUE)
    assert selectors.account_balance(account=pending) == 2 * M - fee_for(2 * M) == 1_800_000
    assert selectors.account_balance(account=revenue) == 200_000
    refund = refund_escrow(artist=artist, job_ref="job:1", key="refund:job:1")
    assert refund is not None
    assert refund_escrow(artist=artist, job_ref="job:1", key="refund:job:1").pk == refund.pk
    assert selectors.account_balance(account=wallet(artist)) == 8 * M
    assert selectors.user_escrow_total(user=artist) == 0
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []


def test_releasing_more_than_the_escrow_holds_is_refused(artist, provider):
    fund(artist, 10 * M)
    hold_escrow(artist=artist, job_ref="job:2", amount=1 * M, key="hold:2")
    with pytest.raises(InsufficientFunds):
        release_escrow(artist=artist, job_ref="job:2", provider=provider, amount=2 * M, key="settle:frame:9")


def test_it_cannot_hold_more_than_the_wallet_has(artist):
    fund(artist, 1 * M)
    with pytest.raises(InsufficientFunds):
        hold_escrow(artist=artist, job_ref="job:3", amount=2 * M, key="hold:3")
    assert selectors.user_escrow_total(user=artist) == 0


def test_drift_is_detected_when_the_cache_is_tampered(artist):
    fund(artist, 1 * M)
    Account.objects.filter(pk=wallet(artist).pk).update(balance=5)
    drift = selectors.ledger_drift()
    assert [(d.cached, d.actual) for d in drift] == [(5, 1 * M)]
