"""`{% load money %}`: `tokens` (the formatting itself lives in `marketplace.money`) and `account_label`."""
from django import template

from marketplace import money

register = template.Library()

tokens = register.filter("tokens", money.tokens)

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
