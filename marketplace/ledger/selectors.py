from dataclasses import dataclass

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from marketplace.ledger.models import Account, LedgerTransaction, Posting


def account_balance(*, account: Account) -> int:
    return Account.objects.values_list("balance", flat=True).get(pk=account.pk)


def account_balance_from_postings(*, account: Account) -> int:
    return Posting.objects.filter(account=account).aggregate(s=Coalesce(Sum("amount"), 0))["s"]


def user_balances(*, user) -> dict[str, int]:
    return dict(Account.objects.filter(owner=user).exclude(kind=Account.Kind.JOB_ESCROW).values_list("kind", "balance"))


def user_escrow_total(*, user) -> int:
    return Account.objects.filter(owner=user, kind=Account.Kind.JOB_ESCROW).aggregate(s=Coalesce(Sum("balance"), 0))[
        "s"
    ]


def user_postings(*, user) -> QuerySet[Posting]:
    return (
        Posting.objects.filter(account__owner=user)
        .select_related("transaction", "account")
        .order_by("-transaction__created_at", "-id")
    )


def posted_to(*, kind: str, owner, keys: list[str]) -> dict[str, int]:
    """What each transaction of `keys` posted to the `kind` account of `owner` (keys that posted nothing are absent).

    Later entries that undo or follow a transaction (an upheld dispute, a maturation) read what was really
    posted, never a recomputation with today's settings (the platform fee may have changed since).
    """
    return {key: s for (key, owner_id), s in posted_to_owners(kind=kind, keys=keys).items() if owner_id == owner.pk}


def posted_to_owners(*, kind: str, keys: list[str]) -> dict[tuple[str, int | None], int]:
    """`posted_to` for many owners at once: {(key, account owner id): what that key posted to their `kind`
    account}, in one query (a batch of maturations)."""
    rows = (
        Posting.objects.filter(account__kind=kind, transaction__idempotency_key__in=keys)
        .values_list("transaction__idempotency_key", "account__owner_id")
        .annotate(s=Sum("amount"))
    )
    return {(key, owner_id): s for key, owner_id, s in rows}


def transaction_exists(*, key: str) -> bool:
    return LedgerTransaction.objects.filter(idempotency_key=key).exists()


def transaction_postings(*, key: str) -> list[Posting]:
    return list(Posting.objects.filter(transaction__idempotency_key=key).select_related("account").order_by("pk"))


def ledger_total() -> int:
    """Sum of every posting: 0 in a consistent ledger."""
    return Posting.objects.aggregate(s=Coalesce(Sum("amount"), 0))["s"]


@dataclass(frozen=True)
class Drift:
    account_key: str
    cached: int
    actual: int


def ledger_drift() -> list[Drift]:
    """Accounts whose cached balance differs from the sum of their postings (should be none)."""
    rows = Account.objects.annotate(actual=Coalesce(Sum("postings__amount"), 0)).filter(~Q(actual=0) | ~Q(balance=0))
    return [Drift(a.key, a.balance, a.actual) for a in rows if a.balance != a.actual]
