"""Money crossing the platform's edge: top-ups in, payouts out, and the release of earned frame pay.

Balances live in the ledger; these rows record what happened with the payment provider and why, so every
ledger entry made here can be traced to a Stripe object (or a simulated one) and replayed safely.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class TopUp(models.Model):
    """An artist buying tokens. Created before the provider is called; `ref` travels in Stripe metadata.

    Refunds (`refunded_cents`, cumulative) and the charge's one card dispute (`dispute_id`, `disputed_cents`,
    `dispute_status`: the furthest Stripe status seen) are recorded apart. `reversed_cents` is what Stripe
    holds back now: the refunds plus the disputed amount while the dispute holds the funds, at most the
    amount paid. It goes down again when a dispute is won. The tokens taken back for it are
    `clawed_back_micro`: either never credited (the reversal arrived before completion) or debited from
    the wallet, of which `unrecovered_micro` is the part the wallet no longer held (see services).
    `ledger_adjustments` numbers the ledger transactions posted for reversals after completion, so each one
    has its own idempotency key.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        COMPLETED = "completed", "Completed"
        REFUNDED = "refunded", "Refunded"
        DISPUTED = "disputed", "Disputed by the card holder"

    class DisputeStatus(models.TextChoices):
        """Stripe's dispute statuses; labels as the artist reads them on the wallet page."""

        WARNING_NEEDS_RESPONSE = "warning_needs_response", "Card issuer inquiry"
        WARNING_UNDER_REVIEW = "warning_under_review", "Card issuer inquiry"
        WARNING_CLOSED = "warning_closed", "Card issuer inquiry closed"
        NEEDS_RESPONSE = "needs_response", "Card dispute open"
        UNDER_REVIEW = "under_review", "Card dispute open"
        WON = "won", "Card dispute won, tokens reinstated"
        LOST = "lost", "Card dispute lost"
        PREVENTED = "prevented", "Card dispute prevented"

    ref = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="topups")
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    tokens_micro = models.BigIntegerField()
    provider = models.CharField(max_length=10)
    session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    payment_intent = models.CharField(max_length=255, blank=True, default="", db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    credited_micro = models.BigIntegerField(default=0)
    refunded_cents = models.BigIntegerField(default=0)
    dispute_id = models.CharField(max_length=255, blank=True, default="")
    disputed_cents = models.BigIntegerField(default=0)
    dispute_status = models.CharField(max_length=30, choices=DisputeStatus.choices, blank=True, default="")
    reversed_cents = models.BigIntegerField(default=0)
    clawed_back_micro = models.BigIntegerField(default=0)
    unrecovered_micro = models.BigIntegerField(default=0)
    ledger_adjustments = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="topup_amount_positive"),
            models.CheckConstraint(condition=Q(tokens_micro__gt=0), name="topup_tokens_positive"),
            models.CheckConstraint(
                condition=Q(reversed_cents__gte=0, reversed_cents__lte=F("amount_cents")),
                name="topup_reversed_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(refunded_cents__gte=0, refunded_cents__lte=F("amount_cents")),
                name="topup_refunded_within_amount",
            ),
            models.CheckConstraint(condition=Q(disputed_cents__gte=0), name="topup_disputed_not_negative"),
            models.CheckConstraint(
                condition=Q(credited_micro__gte=0, credited_micro__lte=F("tokens_micro")),
                name="topup_credited_within_tokens",
            ),
            models.CheckConstraint(
                condition=Q(unrecovered_micro__gte=0, unrecovered_micro__lte=F("clawed_back_micro")),
                name="topup_unrecovered_within_clawback",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"top-up {self.ref} of {self.user_id}: {self.amount_cents} {self.currency} ({self.state})"


class WebhookEvent(models.Model):
    """Every verified Stripe event, recorded first: a replayed event id finds its row and changes nothing."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}: {self.outcome}"


class ConnectAccount(models.Model):
    """A provider's payout destination: a Stripe Connect Express account (or a simulated one)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="connect_account")
    stripe_account_id = models.CharField(max_length=255, unique=True)
    onboarded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.stripe_account_id} of {self.user_id} ({'ready' if self.onboarded else 'onboarding'})"


class Payout(models.Model):
    """Available earnings sent to a provider. The tokens move to payout clearing before Stripe is called.

    requested: tokens in payout clearing, transfer not confirmed yet; sent: Stripe accepted the transfer;
    failed: Stripe refused it and the tokens went back; returned: a sent transfer was reversed later.
    """

    class State(models.TextChoices):
        REQUESTED = "requested", "Requested"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed, tokens returned"
        RETURNED = "returned", "Reversed, tokens returned"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payouts")
    amount_micro = models.BigIntegerField()
    amount_cents = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=10)
    state = models.CharField(max_length=10, choices=State.choices, default=State.REQUESTED, db_index=True)
    # The client's key (one per rendered form): a double click sends the same key and gets the same payout.
    request_key = models.CharField(max_length=64)
    # Ours, sent to Stripe as Idempotency-Key: re-sending a stuck payout can never create a second transfer.
    idempotency_key = models.CharField(max_length=64, unique=True, default=uuid.uuid4)
    transfer_id = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    returned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_micro__gt=0), name="payout_amount_positive"),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="payout_cents_positive"),
            models.UniqueConstraint(fields=["user", "request_key"], name="payout_request_key_unique"),
            # One payout in flight per provider, whatever the number of clicks, tabs or web workers.
            models.UniqueConstraint(
                fields=["user"], condition=Q(state="requested"), name="payout_one_requested_per_user"
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"payout {self.pk} of {self.user_id}: {self.amount_micro} micro ({self.state})"


class EarningMaturation(models.Model):
    """A settled frame's pay that left the dispute window: moved from pending to available, once."""

    frame = models.OneToOneField("jobs.Frame", on_delete=models.PROTECT, related_name="earning_maturation")
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount_micro = models.BigIntegerField()
    matured_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount_micro__gt=0), name="maturation_amount_positive")]

    def __str__(self) -> str:
        return f"frame {self.frame_id}: {self.amount_micro} micro available to {self.provider_id}"
