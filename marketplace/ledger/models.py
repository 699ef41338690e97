"""Double-entry ledger: Account, LedgerTransaction, Posting. Amounts are integer micro-tokens.

Postgres enforces the rules itself (migration 0002): every transaction's postings sum to zero (deferred
constraint trigger at COMMIT) and postings are append-only. `Account.balance` is a cache of the sum of
its postings, kept by the ledger service in the same transaction, and checked by `selectors.ledger_drift`.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Account(models.Model):
    class Kind(models.TextChoices):
        ARTIST_WALLET = "artist_wallet", "Artist wallet"
        PROVIDER_PENDING = "provider_pending", "Provider pending earnings"
        PROVIDER_AVAILABLE = "provider_available", "Provider available earnings"
        JOB_ESCROW = "job_escrow", "Job escrow"
        PLATFORM_REVENUE = "platform_revenue", "Platform revenue"
        PAYMENT_CLEARING = "payment_clearing", "Payment clearing"
        PAYOUT_CLEARING = "payout_clearing", "Payout clearing"

    # Only the clearing account of incoming money may go negative: it mirrors fiat held outside.
    NEGATIVE_ALLOWED = frozenset({Kind.PAYMENT_CLEARING})

    kind = models.CharField(max_length=24, choices=Kind.choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    ref = models.CharField(max_length=64, blank=True, default="", help_text="e.g. job:42 for an escrow account")
    # kind:owner:ref, unique (Meta: `unique=True` would add a LIKE index no lookup uses); a plain column because NULL
    # owners would slip past a composite unique index.
    key = models.CharField(max_length=128)
    allow_negative = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key"], name="ledger_account_key_unique"),
            models.CheckConstraint(
                condition=Q(allow_negative=True) | Q(balance__gte=0), name="ledger_account_no_overdraft"
            ),
        ]

    def __str__(self) -> str:
        return self.key


class LedgerTransaction(models.Model):
    idempotency_key = models.CharField(max_length=200, unique=True)
    memo = models.CharField(max_length=300)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.idempotency_key}: {self.memo}"


class Posting(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="postings")
    # No index of its own: (account, transaction) leads with it; every settlement inserts a posting per leg.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="postings", db_index=False)
    amount = models.BigIntegerField(help_text="signed micro-tokens; positive = into the account")

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_posting_nonzero")]
        indexes = [models.Index(fields=["account", "transaction"])]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.account_id}"
