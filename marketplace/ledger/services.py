"""Every ledger write goes through here. One database transaction per call.

`transfer` is the only function that creates postings; the escrow helpers are named transfers.
"""
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from marketplace.ledger.models import Account, LedgerTransaction, Posting

Kind = Account.Kind


class LedgerError(Exception):
    pass


class InsufficientFunds(LedgerError):
    pass


class UnbalancedTransaction(LedgerError):
    pass


class IdempotencyKeyReused(LedgerError):
    """The key was already used for a different set of postings."""


@dataclass(frozen=True)
class Leg:
    account: Account
    amount: int


def account_get(*, kind: str, owner=None, ref: str = "") -> Account:
    """The account of that kind for that owner/ref, created on first use."""
    key = f"{kind}:{owner.pk if owner is not None else '-'}:{ref}"
    account, _ = Account.objects.get_or_create(
        key=key,
        defaults={"kind": kind, "owner": owner, "ref": ref, "allow_negative": kind in Account.NEGATIVE_ALLOWED},
    )
    return account


def _check_amount(amount: object) -> int:
    # bool is an int subclass; floats and Decimals are refused outright: money is integer micro-tokens.
    if type(amount) is not int:
        raise LedgerError(f"amounts are integer micro-tokens, got {type(amount).__name__}")
    return amount


def _legs_signature(pairs) -> list[tuple[int, int]]:
    net: dict[int, int] = defaultdict(int)
    for account_id, amount in pairs:
        net[account_id] += amount
    return sorted((a, n) for a, n in net.items() if n)


def _transaction_insert(*, key: str, memo: str, metadata: dict) -> LedgerTransaction | None:
    """Insert the transaction row, or return None when the key is taken.

    ON CONFLICT DO NOTHING waits for a concurrent writer of the same key and then yields no row, so
    replays need no savepoint and no error handling: one round trip instead of three.
    """
    now = timezone.now()
    table = LedgerTransaction._meta.db_table
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (idempotency_key, memo, metadata, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            [key, memo, json.dumps(metadata), now],
        )
        row = cur.fetchone()
    if row is None:
        return None
    return LedgerTransaction(pk=row[0], idempotency_key=key, memo=memo, metadata=metadata, created_at=now)


def transfer(*, key: str, memo: str, legs: Sequence[Leg], metadata: dict | None = None) -> LedgerTransaction:
    """Post a balanced transaction once per idempotency key.

    Replaying a key returns the first transaction unchanged; reusing it for other legs raises.
    Overdrafts are refused by the accounts' CHECK constraint, so concurrent spenders cannot race past it.
    """
    if not key:
        raise LedgerError("an idempotency key is required")
    if len(legs) < 2:
        raise UnbalancedTransaction("a transaction needs at least two legs")
    for leg in legs:
        if _check_amount(leg.amount) == 0:
            raise LedgerError("zero-amount legs are not allowed")
    if sum(leg.amount for leg in legs) != 0:
        raise UnbalancedTransaction(f"legs sum to {sum(leg.amount for leg in legs)}, not 0")
    wanted = _legs_signature((leg.account.pk, leg.amount) for leg in legs)

    with transaction.atomic():
        txn = _transaction_insert(key=key, memo=memo, metadata=metadata or {})
        if txn is None:
            # The key exists (or a concurrent writer just committed it): replay the first result.
            txn = LedgerTransaction.objects.get(idempotency_key=key)
            if _legs_signature(txn.postings.values_list("account_id", "amount")) != wanted:
                raise IdempotencyKeyReused(f"idempotency key {key!r} was used for different postings")
            return txn
        Posting.objects.bulk_create(Posting(transaction=txn, account=leg.account, amount=leg.amount) for leg in legs)
        # Ascending id order: two transfers touching the same accounts lock them in one order (no deadlock).
        # An overdraft trips the CHECK constraint; raising here rolls the whole transfer back.
        for account_id, delta in wanted:
            try:
                Account.objects.filter(pk=account_id).update(balance=F("balance") + delta)
            except IntegrityError as exc:
                raise InsufficientFunds(f"{memo}: insufficient funds") from exc
    return txn


def fee_for(amount: int) -> int:
    return amount * settings.PLATFORM_FEE_BPS // 10_000


def escrow_account(*, artist, job_ref: str) -> Account:
    return account_get(kind=Kind.JOB_ESCROW, owner=artist, ref=job_ref)


def hold_escrow(*, artist, job_ref: str, amount: int, key: str) -> LedgerTransaction:
    """Artist wallet -> job escrow."""
    if _check_amount(amount) <= 0:
        raise LedgerError("escrow amount must be positive")
    wallet = account_get(kind=Kind.ARTIST_WALLET, owner=artist)
    escrow = escrow_account(artist=artist, job_ref=job_ref)
    return transfer(key=key, memo=f"hold escrow for {job_ref}", legs=[Leg(wallet, -amount), Leg(escrow, amount)])


def release_escrow(*, artist, job_ref: str, provider, amount: int, key: str, memo: str = "") -> LedgerTransaction:
    """Job escrow -> provider pending (minus the platform fee) + platform revenue."""
    if _check_amount(amount) <= 0:
        raise LedgerError("release amount must be positive")
    escrow = escrow_account(artist=artist, job_ref=job_ref)
    fee = fee_for(amount)
    legs = [Leg(escrow, -amount), Leg(account_get(kind=Kind.PROVIDER_PENDING, owner=provider), amount - fee)]
    if fee:
        legs.append(Leg(account_get(kind=Kind.PLATFORM_REVENUE), fee))
    return transfer(key=key, memo=memo or f"release escrow of {job_ref}", legs=legs)


def refund_escrow(*, artist, job_ref: str, key: str, amount: int | None = None) -> LedgerTransaction | None:
    """Job escrow -> artist wallet; `amount=None` refunds everything left. None when nothing is left."""
    escrow = escrow_account(artist=artist, job_ref=job_ref)
    with transaction.atomic():
        done = LedgerTransaction.objects.filter(idempotency_key=key).first()
        if done is not None:  # a replay after everything was refunded must not read "nothing left"
            return done
        if amount is None:
            # Lock the escrow row so nothing is released between reading the remainder and refunding it.
            amount = Account.objects.select_for_update().get(pk=escrow.pk).balance
            if amount == 0:
                return None
        if _check_amount(amount) <= 0:
            raise LedgerError("refund amount must be positive")
        wallet = account_get(kind=Kind.ARTIST_WALLET, owner=artist)
        return transfer(key=key, memo=f"refund escrow of {job_ref}", legs=[Leg(escrow, -amount), Leg(wallet, amount)])
