"""Read-only admin: these rows mirror the payment provider and the ledger; services alone change them."""

from django.contrib import admin

from marketplace.ledger.admin import ReadOnlyAdmin
from marketplace.payments.models import ConnectAccount, EarningMaturation, Payout, TopUp, WebhookEvent


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = (
        "ref",
        "user",
        "amount_cents",
        "state",
        "dispute_status",
        "credited_micro",
        "unrecovered_micro",
        "created_at",
    )
    list_filter = ("state", "dispute_status", "provider")
    search_fields = ("ref", "session_id", "payment_intent", "dispute_id", "user__username")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "received_at", "outcome")
    search_fields = ("event_id", "type")


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = ("pk", "user", "amount_micro", "state", "transfer_id", "created_at")
    list_filter = ("state",)
    search_fields = ("user__username", "transfer_id")


@admin.register(ConnectAccount)
class ConnectAccountAdmin(ReadOnlyAdmin):
    list_display = ("user", "stripe_account_id", "onboarded")


@admin.register(EarningMaturation)
class EarningMaturationAdmin(ReadOnlyAdmin):
    list_display = ("frame", "provider", "amount_micro", "matured_at")
