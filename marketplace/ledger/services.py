"""Every ledger write goes through here. One database transaction per call.

`transfer` and its batch form `transfers` are the only functions that create postings; the escrow helpers
are named transfers.
"""

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from marketplace.compiled import read_in, text_marks
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


# A user (settings.AUTH_USER_MODEL) or None. The ledger sits below the accounts app and never imports it.
Owner = Any


@dataclass(frozen=True)
class Leg:
    account: Account
    amount: int


def accounts_get(*wanted: tuple[str, Owner, str]) -> list[Account]:
    """The accounts for (kind, owner, ref) triples, in order, in one query; missing ones are created."""
    keys = [f"{kind}:{owner.pk if owner is not None else '-'}:{ref}" for kind, owner, ref in wanted]
    # Compiled once per count of keys: every settlement batch reads its accounts, a small farm's one frame's three.
    found = {a.key: a for a in read_in(_accounts_of, sorted(set(keys)), marks=text_marks)}
    # Missing ones are created in key order, whoever asks: two settlers creating the same new accounts in their
    # own orders (a batch asks revenue first, a single release escrow first) deadlocked on the unique key.
    for key, (kind, owner, ref) in sorted(dict(zip(keys, wanted, strict=True)).items(), key=lambda item: item[0]):
        if key not in found:
            found[key], _ = Account.objects.get_or_create(
                key=key,
                defaults={"kind": kind, "owner": owner, "ref": ref, "allow_negative": kind in Account.NEGATIVE_ALLOWED},
            )
    return [found[key] for key in keys]


def accounts_by(*wanted: tuple[str, Owner, str]) -> dict[tuple[str, Owner, str], Account]:
    """`accounts_get` as a mapping from each (kind, owner, ref) triple to its account; a triple may repeat."""
    triples = list(dict.fromkeys(wanted))
    return dict(zip(triples, accounts_get(*triples), strict=True))


def _accounts_of(keys: list[str]) -> QuerySet[Account]:
    return Account.objects.filter(key__in=keys)


def account_get(*, kind: str, owner: Owner = None, ref: str = "") -> Account:
    """The account of that kind for that owner/ref, created on first use."""
    return accounts_get((kind, owner, ref))[0]


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


def _overdraft(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    # SQLite names no constraint; there the only CHECK a balance update can trip is the overdraft one.
    return diag is None or diag.constraint_name == "ledger_account_no_overdraft"


def _post_in_database(*, key: str, memo: str, metadata: dict, legs: Sequence[Leg], now) -> tuple[int, bool]:
    """Postgres: migration 0003's `ledger_post` does the writes in one statement."""
    sql = "SELECT transaction_id, created FROM ledger_post(%s, %s, %s::jsonb, %s::bigint[], %s::bigint[], %s)"
    params = [key, memo, json.dumps(metadata), [leg.account.pk for leg in legs], [leg.amount for leg in legs], now]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchone()


def _post_rows(*, key: str, memo: str, metadata: dict, legs: Sequence[Leg], now) -> tuple[int, bool]:
    """SQLite (`make run`'s database): the same steps as `ledger_post`, one statement each."""
    table = LedgerTransaction._meta.db_table
    with connection.cursor() as cur:
        # ON CONFLICT DO NOTHING waits for a concurrent writer of the same key, then yields no row.
        cur.execute(
            f"INSERT INTO {table} (idempotency_key, memo, metadata, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            [key, memo, json.dumps(metadata), now],
        )
        row = cur.fetchone()
    if row is None:
        return LedgerTransaction.objects.values_list("pk", flat=True).get(idempotency_key=key), False
    Posting.objects.bulk_create(Posting(transaction_id=row[0], account=leg.account, amount=leg.amount) for leg in legs)
    # Ascending id order: two transfers touching the same accounts lock them in one order (no deadlock).
    for account_id, delta in _legs_signature((leg.account.pk, leg.amount) for leg in legs):
        Account.objects.filter(pk=account_id).update(balance=F("balance") + delta)
    return row[0], True


def _check_transfer(*, key: str, legs: Sequence[Leg]) -> None:
    if not key:
        raise LedgerError("an idempotency key is required")
    if len(legs) < 2:
        raise UnbalancedTransaction("a transaction needs at least two legs")
    for leg in legs:
        if _check_amount(leg.amount) == 0:
            raise LedgerError("zero-amount legs are not allowed")
    if sum(leg.amount for leg in legs) != 0:
        raise UnbalancedTransaction(f"legs sum to {sum(leg.amount for leg in legs)}, not 0")


def _replays_check(replays: dict[int, tuple[str, Sequence[Leg]]]) -> None:
    """A replayed key (transaction id -> (key, legs)) must carry the postings it was first used for."""
    if not replays:
        return
    stored: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for txn_id, account_id, amount in Posting.objects.filter(transaction_id__in=replays).values_list(
        "transaction_id", "account_id", "amount"
    ):
        stored[txn_id].append((account_id, amount))
    for txn_id, (key, legs) in replays.items():
        if _legs_signature(stored[txn_id]) != _legs_signature((leg.account.pk, leg.amount) for leg in legs):
            raise IdempotencyKeyReused(f"idempotency key {key!r} was used for different postings")


def transfer(*, key: str, memo: str, legs: Sequence[Leg], metadata: dict | None = None) -> LedgerTransaction:
    """Post a balanced transaction once per idempotency key.

    Replaying a key returns the first transaction unchanged; reusing it for other legs raises.
    Overdrafts are refused by the accounts' CHECK constraint, so concurrent spenders cannot race past it.
    """
    _check_transfer(key=key, legs=legs)
    metadata = metadata or {}
    now = timezone.now()
    post = _post_in_database if connection.vendor == "postgresql" else _post_rows
    try:
        # Inside a caller's transaction: a savepoint, so a refusal leaves that transaction usable. Outside one,
        # on Postgres the single statement is a transaction of its own.
        if connection.in_atomic_block or post is _post_rows:
            with transaction.atomic():
                txn_id, created = post(key=key, memo=memo, metadata=metadata, legs=legs, now=now)
        else:
            txn_id, created = post(key=key, memo=memo, metadata=metadata, legs=legs, now=now)
    except IntegrityError as exc:
        if _overdraft(exc):
            raise InsufficientFunds(f"{memo}: insufficient funds") from exc
        raise
    if not created:
        # The key exists (or a concurrent writer just committed it): replay the first result.
        _replays_check({txn_id: (key, legs)})
        return LedgerTransaction.objects.get(pk=txn_id)
    return LedgerTransaction(pk=txn_id, idempotency_key=key, memo=memo, metadata=metadata, created_at=now)


@dataclass(frozen=True)
class Transfer:
    key: str
    memo: str
    legs: Sequence[Leg]
    metadata: dict | None = None


@dataclass(frozen=True)
class Posted:
    key: str
    transaction_id: int
    created: bool  # False: the key was already posted (a replay), nothing was written


def _post_many_in_database(*, transfers: Sequence[Transfer], now) -> list[tuple[int, bool]]:
    """Postgres: migration 0004's `ledger_post_many` does every transfer's writes in one statement."""
    leg_of, accounts, amounts = [], [], []
    for i, t in enumerate(transfers, start=1):  # `WITH ORDINALITY` counts from 1
        leg_of += [i] * len(t.legs)
        accounts += [leg.account.pk for leg in t.legs]
        amounts += [leg.amount for leg in t.legs]
    sql = (
        "SELECT transaction_id, created FROM ledger_post_many(%s::text[], %s::text[], %s::jsonb[], %s::int[], "
        "%s::bigint[], %s::bigint[], %s)"
    )
    params = [
        [t.key for t in transfers],
        [t.memo for t in transfers],
        [json.dumps(t.metadata or {}) for t in transfers],
        leg_of,
        accounts,
        amounts,
        now,
    ]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def transfers(*, transfers: Sequence[Transfer]) -> list[Posted]:
    """Post many balanced transactions at once, each once per its own idempotency key (a batch of settlements).

    The same rules as `transfer`, per transfer: a replayed key writes nothing, a key reused for other legs
    raises (and nothing of the batch is written); an overdraft refuses the whole batch. One statement on
    Postgres, in one transaction (a savepoint inside a caller's).
    """
    if not transfers:
        return []
    for t in transfers:
        _check_transfer(key=t.key, legs=t.legs)
    if len({t.key for t in transfers}) != len(transfers):
        raise LedgerError("a batch names one idempotency key twice")
    now = timezone.now()
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                rows = _post_many_in_database(transfers=transfers, now=now)
            else:
                rows = [
                    _post_rows(key=t.key, memo=t.memo, metadata=t.metadata or {}, legs=t.legs, now=now)
                    for t in transfers
                ]
            posted = zip(transfers, rows, strict=True)
            _replays_check({txn_id: (t.key, t.legs) for t, (txn_id, created) in posted if not created})
    except IntegrityError as exc:
        if _overdraft(exc):
            raise InsufficientFunds(f"{len(transfers)} transfers: insufficient funds") from exc
        raise
    return [Posted(t.key, txn_id, created) for t, (txn_id, created) in zip(transfers, rows, strict=True)]


def fee_for(amount: int) -> int:
    return amount * settings.PLATFORM_FEE_BPS // 10_000


def escrow_account(*, artist, job_ref: str) -> Account:
    return account_get(kind=Kind.JOB_ESCROW, owner=artist, ref=job_ref)


def hold_escrow(*, artist, job_ref: str, amount: int, key: str) -> LedgerTransaction:
    """Artist wallet -> job escrow."""
    if _check_amount(amount) <= 0:
        raise LedgerError("escrow amount must be positive")
    wallet, escrow = accounts_get((Kind.ARTIST_WALLET, artist, ""), (Kind.JOB_ESCROW, artist, job_ref))
    return transfer(key=key, memo=f"hold escrow for {job_ref}", legs=[Leg(wallet, -amount), Leg(escrow, amount)])


def release_escrow(*, artist, job_ref: str, provider, amount: int, key: str, memo: str = "") -> LedgerTransaction:
    """Job escrow -> provider pending (minus the platform fee) + platform revenue."""
    escrow, pending, revenue = accounts_get(
        (Kind.JOB_ESCROW, artist, job_ref), (Kind.PROVIDER_PENDING, provider, ""), (Kind.PLATFORM_REVENUE, None, "")
    )
    legs = _release_legs(escrow=escrow, pending=pending, revenue=revenue, amount=amount)
    return transfer(key=key, memo=memo or f"release escrow of {job_ref}", legs=legs)


@dataclass(frozen=True)
class Release:
    """One `release_escrow` of a batch."""

    artist: Owner
    job_ref: str
    provider: Owner
    amount: int
    key: str
    memo: str


def _release_legs(*, escrow: Account, pending: Account, revenue: Account, amount: int) -> list[Leg]:
    if _check_amount(amount) <= 0:
        raise LedgerError("release amount must be positive")
    fee = fee_for(amount)
    legs = [Leg(escrow, -amount), Leg(pending, amount - fee)]
    if fee:
        legs.append(Leg(revenue, fee))
    return legs


def release_escrow_many(*, releases: Sequence[Release]) -> list[Posted]:
    """Many `release_escrow`s (a batch of settled frames) in one `transfers` call; accounts read in one query."""
    if not releases:
        return []
    wanted: list[tuple[str, Owner, str]] = [(Kind.PLATFORM_REVENUE, None, "")]
    for r in releases:
        wanted += [(Kind.JOB_ESCROW, r.artist, r.job_ref), (Kind.PROVIDER_PENDING, r.provider, "")]
    by_triple = accounts_by(*wanted)
    revenue = by_triple[(Kind.PLATFORM_REVENUE, None, "")]
    return transfers(
        transfers=[
            Transfer(
                key=r.key,
                memo=r.memo,
                legs=_release_legs(
                    escrow=by_triple[(Kind.JOB_ESCROW, r.artist, r.job_ref)],
                    pending=by_triple[(Kind.PROVIDER_PENDING, r.provider, "")],
                    revenue=revenue,
                    amount=r.amount,
                ),
            )
            for r in releases
        ]
    )


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
