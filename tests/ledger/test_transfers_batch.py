"""`transfers` / `release_escrow_many`: many transactions in one call (one statement on Postgres), each once per
key, all or nothing."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace.ledger import selectors
from marketplace.ledger.models import Account, LedgerTransaction, Posting
from marketplace.ledger.services import (
    IdempotencyKeyReused,
    InsufficientFunds,
    LedgerError,
    Leg,
    Release,
    Transfer,
    account_get,
    fee_for,
    hold_escrow,
    release_escrow,
    release_escrow_many,
    transfers,
)
from tests.fixtures.money import fund

pytestmark = pytest.mark.django_db
Kind = Account.Kind
M = 1_000_000


def wallet(user) -> Account:
    return account_get(kind=Kind.ARTIST_WALLET, owner=user)


def balance(account: Account) -> int:
    return selectors.account_balance(account=account)


def gifts(artist, outsider, n: int, *, amount: int = M, prefix: str = "g") -> list[Transfer]:
    a, b = wallet(artist), wallet(outsider)
    return [Transfer(key=f"{prefix}{i}", memo="gift", legs=[Leg(a, -amount), Leg(b, amount)]) for i in range(n)]


def test_a_batch_posts_every_transfer_once_and_keeps_the_ledger_at_zero(artist, outsider):
    fund(artist, 10 * M)
    posted = transfers(transfers=gifts(artist, outsider, 4))
    assert [p.created for p in posted] == [True] * 4
    assert len({p.transaction_id for p in posted}) == 4
    assert balance(wallet(artist)) == 6 * M and balance(wallet(outsider)) == 4 * M
    assert Posting.objects.filter(transaction_id__in=[p.transaction_id for p in posted]).count() == 8
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []


def test_replaying_a_batch_writes_nothing_and_a_partly_new_one_posts_only_the_new_keys(artist, outsider):
    fund(artist, 10 * M)
    first = transfers(transfers=gifts(artist, outsider, 3))
    again = transfers(transfers=gifts(artist, outsider, 5))  # g0..g2 replayed, g3 and g4 new
    assert [p.created for p in again] == [False, False, False, True, True]
    assert [p.transaction_id for p in again[:3]] == [p.transaction_id for p in first]
    assert balance(wallet(outsider)) == 5 * M
    assert LedgerTransaction.objects.filter(idempotency_key__startswith="g").count() == 5
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []


def test_a_key_reused_for_other_legs_refuses_the_whole_batch(artist, outsider):
    fund(artist, 10 * M)
    transfers(transfers=gifts(artist, outsider, 1))
    batch = gifts(artist, outsider, 1, amount=2 * M) + gifts(artist, outsider, 2, prefix="new")
    with pytest.raises(IdempotencyKeyReused):
        transfers(transfers=batch)
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="new").exists()
    assert balance(wallet(outsider)) == M


def test_an_overdraft_anywhere_refuses_the_whole_batch(artist, outsider):
    fund(artist, 3 * M)
    with pytest.raises(InsufficientFunds):
        transfers(transfers=gifts(artist, outsider, 4))  # the fourth would overdraw the wallet
    assert balance(wallet(artist)) == 3 * M
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="g").exists()


def test_a_batch_naming_a_key_twice_or_unbalanced_is_refused(artist, outsider):
    fund(artist, 3 * M)
    twice = gifts(artist, outsider, 1) * 2
    with pytest.raises(LedgerError):
        transfers(transfers=twice)
    lopsided = [Transfer(key="x", memo="x", legs=[Leg(wallet(artist), -M), Leg(wallet(outsider), 2 * M)])]
    with pytest.raises(LedgerError):
        transfers(transfers=lopsided)
    assert balance(wallet(artist)) == 3 * M


@pytest.mark.postgres
def test_on_postgres_a_batch_is_one_statement(artist, outsider):
    fund(artist, 100 * M)
    batch = gifts(artist, outsider, 50)
    with CaptureQueriesContext(connection) as queries:
        transfers(transfers=batch)
    posting = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(posting) == 1 and "ledger_post_many" in posting[0], posting
    assert balance(wallet(outsider)) == 50 * M


def test_release_escrow_many_pays_as_release_escrow_does(artist, provider, outsider):
    fund(artist, 20 * M)
    hold_escrow(artist=artist, job_ref="job:1", amount=10 * M, key="hold:1")
    hold_escrow(artist=artist, job_ref="job:2", amount=10 * M, key="hold:2")
    release_escrow(artist=artist, job_ref="job:1", provider=provider, amount=3 * M, key="one")
    one_pending = balance(account_get(kind=Kind.PROVIDER_PENDING, owner=provider))
    releases = [
        Release(artist=artist, job_ref="job:1", provider=provider, amount=3 * M, key="a", memo="a"),
        Release(artist=artist, job_ref="job:2", provider=provider, amount=3 * M, key="b", memo="b"),
        Release(artist=artist, job_ref="job:2", provider=outsider, amount=M, key="c", memo="c"),
    ]
    assert [p.created for p in release_escrow_many(releases=releases)] == [True] * 3
    assert balance(account_get(kind=Kind.PROVIDER_PENDING, owner=provider)) == 3 * one_pending
    assert balance(account_get(kind=Kind.PROVIDER_PENDING, owner=outsider)) == M - fee_for(M)
    assert balance(account_get(kind=Kind.JOB_ESCROW, owner=artist, ref="job:1")) == 4 * M
    assert balance(account_get(kind=Kind.JOB_ESCROW, owner=artist, ref="job:2")) == 6 * M
    assert balance(account_get(kind=Kind.PLATFORM_REVENUE)) == 3 * fee_for(3 * M) + fee_for(M)
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_shared_keys_post_each_key_once(artist, outsider):
    from tests.fixtures.race import race

    fund(artist, 100 * M)
    batches = [gifts(artist, outsider, 20)[i % 2 :: 1] for i in range(6)]  # overlapping key sets
    results = race(lambda i: transfers(transfers=batches[i]), 6)
    assert not [r for r in results if isinstance(r, Exception)], results
    created = [p.key for r in results for p in r if p.created]
    assert sorted(created) == sorted(f"g{i}" for i in range(20))  # every key posted by exactly one batch
    assert balance(wallet(outsider)) == 20 * M
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []
