"""`{% load money %}`: `tokens`, `tokens_exact` (the formatting itself lives in `marketplace.money`),
`account_label` and `bps_multiplier`."""

from django import template

from marketplace import money

register = template.Library()

tokens = register.filter("tokens", money.tokens)
tokens_exact = register.filter("tokens_exact", money.tokens_decimal)  # e.g. in a title, next to the rounded amount

# What a person calls each ledger account (the kinds themselves are internal names).
ACCOUNT_LABELS = {
    "artist_wallet": "Wallet",
    "job_escrow": "Held in escrow",
    "provider_pending": "Pending earnings",
    "provider_available": "Available earnings",
    "platform_revenue": "Platform fees",
    "payment_clearing": "Card payments",
    "payout_clearing": "Payouts in transit",
}


@register.filter
def account_label(kind: str) -> str:
    """`{{ account.kind|account_label }}`: "artist_wallet" -> "Wallet"."""
    return ACCOUNT_LABELS.get(kind, str(kind).replace("_", " ").capitalize())


@register.filter
def bps_multiplier(bps: int | None) -> str:
    """Basis points as a multiplier: 14000 -> "1.40"."""
    return f"{int(bps or 0) // 100 // 100}.{int(bps or 0) // 100 % 100:02d}"
