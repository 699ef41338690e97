"""Rules enforced by Postgres itself, and races between real concurrent connections."""

import pytest
from django.db import IntegrityError, InternalError, connection, transaction

from marketplace.ledger import selectors
from marketplace.ledger.models import Account, LedgerTransaction, Posting
from marketplace.ledger.services import (
    InsufficientFunds,
    Leg,
    account_get,
    hold_escrow,
    release_escrow,
    transfer,
)
from tests.fixtures.money import fund
from tests.fixtures.race import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
M = 1_000_000
THREADS = 10


def test_the_database_refuses_an_unbalanced_raw_insert(artist):
    fund(artist, 5 * M)
    wallet = account_get(kind=Account.Kind.ARTIST_WALLET, owner=artist)
    with pytest.raises((IntegrityError, InternalError), match="unbalanced"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                "INSERT INTO ledger_ledgertransaction (idempotency_key, memo, metadata, created_at) "
                "VALUES ('raw', 'raw', '{}', now()) RETURNING id"
            )
            txn_id = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO ledger_posting (transaction_id, account_id, amount) VALUES (%s, %s, %s)",
                [txn_id, wallet.pk, 7],
            )
    assert not LedgerTransaction.objects.filter(idempotency_key="raw").exists()


def _raw_transaction(cur, key: str) -> int:
    cur.execute(
        "INSERT INTO ledger_ledgertransaction (idempotency_key, memo, metadata, created_at) "
        "VALUES (%s, 'raw', '{}', now()) RETURNING id",
        [key],
    )
    return cur.fetchone()[0]


def test_the_zero_sum_rule_holds_after_every_statement_not_only_at_commit(artist, outsider):
    """Migrations 0005-0006: one check per INSERT statement, of every ledger transaction it added postings to. A
    transaction's postings split over two statements are refused at the first, even though the second would
    balance them; one statement posting a balanced and an unbalanced transaction keeps neither."""
    fund(artist, 5 * M)
    wallet = account_get(kind=Account.Kind.ARTIST_WALLET, owner=artist)
    other = account_get(kind=Account.Kind.ARTIST_WALLET, owner=outsider)
    posting = "INSERT INTO ledger_posting (transaction_id, account_id, amount) VALUES "
    with pytest.raises((IntegrityError, InternalError), match="unbalanced"):
        with transaction.atomic(), connection.cursor() as cur:
            txn = _raw_transaction(cur, "split")
            cur.execute(posting + "(%s, %s, %s)", [txn, wallet.pk, -7])
            cur.execute(posting + "(%s, %s, %s)", [txn, other.pk, 7])  # never reached
    with pytest.raises((IntegrityError, InternalError), match="unbalanced"):
        with transaction.atomic(), connection.cursor() as cur:
            good, bad = _raw_transaction(cur, "good"), _raw_transaction(cur, "bad")
            cur.execute(
                posting + "(%s, %s, %s), (%s, %s, %s), (%s, %s, %s)",
                [good, wallet.pk, -5, good, other.pk, 5, bad, other.pk, 3],
            )
    assert not LedgerTransaction.objects.filter(idempotency_key__in=["split", "good", "bad"]).exists()
    # Balanced in one statement: kept.
    with transaction.atomic(), connection.cursor() as cur:
        txn = _raw_transaction(cur, "whole")
        cur.execute(posting + "(%s, %s, %s), (%s, %s, %s)", [txn, wallet.pk, -2, txn, other.pk, 2])
    assert Posting.objects.filter(transaction__idempotency_key="whole").count() == 2


def test_a_later_statement_keeps_a_transaction_balanced_or_is_refused(artist, outsider):
    """0006 sums only the statement's new postings: with the earlier ones balanced (every statement is held to
    the rule, postings are append-only), the transaction's total is what those new ones add. A balanced pair
    added later is kept; a lone posting added later is refused, whatever the transaction held before."""
    fund(artist, 5 * M)
    wallet = account_get(kind=Account.Kind.ARTIST_WALLET, owner=artist)
    other = account_get(kind=Account.Kind.ARTIST_WALLET, owner=outsider)
    posting = "INSERT INTO ledger_posting (transaction_id, account_id, amount) VALUES "
    with transaction.atomic(), connection.cursor() as cur:
        txn = _raw_transaction(cur, "amended")
        cur.execute(posting + "(%s, %s, %s), (%s, %s, %s)", [txn, wallet.pk, -2, txn, other.pk, 2])
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(posting + "(%s, %s, %s), (%s, %s, %s)", [txn, wallet.pk, -1, txn, other.pk, 1])
    with pytest.raises((IntegrityError, InternalError), match=f"transaction {txn} is unbalanced: postings sum to 3"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(posting + "(%s, %s, %s)", [txn, other.pk, 3])
    assert sorted(Posting.objects.filter(transaction_id=txn).values_list("amount", flat=True)) == [-2, -1, 1, 2]
    assert selectors.ledger_total() == 0


def test_the_database_refuses_to_edit_or_delete_postings(artist):
    fund(artist, 5 * M)
    posting = Posting.objects.first()
    with pytest.raises((IntegrityError, InternalError), match="append-only"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("UPDATE ledger_posting SET amount = amount + 1 WHERE id = %s", [posting.pk])
    with pytest.raises((IntegrityError, InternalError), match="append-only"):
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("DELETE FROM ledger_posting WHERE id = %s", [posting.pk])
    assert selectors.ledger_total() == 0


def test_racing_spenders_never_overdraw_one_wallet(artist, outsider):
    fund(artist, 5 * M)
    src = account_get(kind=Account.Kind.ARTIST_WALLET, owner=artist)
    dst = account_get(kind=Account.Kind.ARTIST_WALLET, owner=outsider)
    results = race(lambda i: transfer(key=f"spend:{i}", memo="spend", legs=[Leg(src, -M), Leg(dst, M)]), THREADS)
    ok = [r for r in results if isinstance(r, LedgerTransaction)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert len(ok) == 5 and len(refused) == THREADS - 5, results
    assert selectors.account_balance(account=src) == 0
    assert selectors.account_balance(account=dst) == 5 * M
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []


def test_racing_settlements_of_one_frame_pay_once(artist, provider):
    fund(artist, 10 * M)
    hold_escrow(artist=artist, job_ref="job:7", amount=3 * M, key="hold:7")
    results = race(
        lambda i: release_escrow(
            artist=artist, job_ref="job:7", provider=provider, amount=1 * M, key="settle:frame:70"
        ),
        THREADS,
    )
    assert all(isinstance(r, LedgerTransaction) for r in results), results
    assert len({r.pk for r in results}) == 1
    pending = account_get(kind=Account.Kind.PROVIDER_PENDING, owner=provider)
    revenue = account_get(kind=Account.Kind.PLATFORM_REVENUE)
    assert selectors.account_balance(account=pending) + selectors.account_balance(account=revenue) == 1 * M
    assert selectors.user_escrow_total(user=artist) == 2 * M
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []


def test_racing_settlements_of_distinct_frames_drain_escrow_exactly(artist, provider):
    fund(artist, 10 * M)
    hold_escrow(artist=artist, job_ref="job:8", amount=4 * M, key="hold:8")
    results = race(
        lambda i: release_escrow(
            artist=artist, job_ref="job:8", provider=provider, amount=1 * M, key=f"settle:frame:8{i}"
        ),
        THREADS,
    )
    assert sum(isinstance(r, LedgerTransaction) for r in results) == 4
    assert sum(isinstance(r, InsufficientFunds) for r in results) == THREADS - 4
    assert selectors.user_escrow_total(user=artist) == 0
    assert selectors.ledger_total() == 0 and selectors.ledger_drift() == []


def test_a_replayed_key_racing_itself_posts_once(artist, outsider):
    fund(artist, 10 * M)
    src = account_get(kind=Account.Kind.ARTIST_WALLET, owner=artist)
    dst = account_get(kind=Account.Kind.ARTIST_WALLET, owner=outsider)
    results = race(lambda i: transfer(key="same-key", memo="dup", legs=[Leg(src, -1 * M), Leg(dst, 1 * M)]), THREADS)
    assert all(isinstance(r, LedgerTransaction) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert selectors.account_balance(account=dst) == 1 * M
    assert Posting.objects.filter(transaction__idempotency_key="same-key").count() == 2
