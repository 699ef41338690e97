"""One payment interface, two implementations: Stripe (when STRIPE_SECRET_KEY is set) and a simulated
provider for one machine (only when no Stripe key is set and PAYMENTS_DEV_PROVIDER allows it).

Providers only talk to the outside world; the services decide what the answers mean for the ledger.
Errors come back as two kinds, because they call for opposite actions:
  ProviderError           the provider refused; nothing happened there (safe to undo our side)
  ProviderOutcomeUnknown  no clear answer (network, 5xx, rate limit); retry with the same idempotency key
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import stripe
from django.conf import settings
from django.urls import reverse

from marketplace.errors import Refused, Unavailable
from marketplace.payments import conf

if TYPE_CHECKING:
    from marketplace.accounts.models import User
    from marketplace.payments.models import Payout

log = logging.getLogger("payments")


class PaymentsUnavailable(Unavailable):
    """No payment provider is configured on this server."""


class ProviderError(Exception):
    """The provider refused the request; nothing was created there."""


class ProviderOutcomeUnknown(Exception):
    """The provider gave no clear answer; the request may or may not have taken effect."""


class WebhookRefused(Refused):
    """A webhook that is not a verified, fresh Stripe event. Nothing is stored."""


@dataclass(frozen=True)
class Checkout:
    url: str
    session_id: str


class PaymentProvider(Protocol):
    name: str

    def checkout_create(self, *, user: User, amount_fiat_cents: int, tokens: int, reference: uuid.UUID) -> Checkout:
        """A hosted payment page for `amount_fiat_cents` that buys `tokens` micro-tokens."""

    def connect_account_create(self, *, user: User) -> str:
        """Create the provider's payout account; returns its id."""

    def connect_onboard(self, *, account_id: str) -> str:
        """A URL where the provider finishes onboarding (identity, bank account)."""

    def connect_onboarded(self, *, account_id: str) -> bool:
        """Whether transfers to the account are possible now."""

    def transfer_create(self, *, payout: Payout) -> str:
        """Send the payout; returns the transfer id. Uses payout.idempotency_key."""


def _absolute(path: str) -> str:
    return settings.PUBLIC_URL.rstrip("/") + path


@contextmanager
def _stripe_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        raise ProviderOutcomeUnknown(f"{what}: Stripe did not answer clearly ({exc.user_message or exc})") from exc
    except stripe.StripeError as exc:
        raise ProviderError(f"{what}: Stripe refused: {exc.user_message or exc}") from exc


class StripeProvider:
    name = "stripe"

    def __init__(self, secret_key: str) -> None:
        self.client = stripe.StripeClient(secret_key, max_network_retries=conf.stripe_max_network_retries())

    def checkout_create(self, *, user: User, amount_fiat_cents: int, tokens: int, reference: uuid.UUID) -> Checkout:
        metadata = {"topup_ref": str(reference), "user_id": str(user.pk), "tokens_micro": str(tokens)}
        params = {
            "mode": "payment",
            "client_reference_id": str(user.pk),
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": conf.currency(),
                        "unit_amount": amount_fiat_cents,
                        "product_data": {"name": f"{tokens // settings.MICRO:,} render tokens"},
                    },
                }
            ],
            "metadata": metadata,
            # Charges, refunds and disputes carry the payment intent's metadata, not the session's.
            "payment_intent_data": {"metadata": metadata},
            "success_url": _absolute(reverse("payments:topup_return", args=[reference])),
            "cancel_url": _absolute(reverse("payments:wallet")),
        }
        if user.email:
            params["customer_email"] = user.email
        with _stripe_errors("checkout"):
            session = self.client.v1.checkout.sessions.create(
                params=params, options={"idempotency_key": f"checkout-{reference}"}
            )
        return Checkout(url=session.url, session_id=session.id)

    def connect_account_create(self, *, user: User) -> str:
        params = {
            "type": "express",
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"user_id": str(user.pk)},
        }
        if user.email:
            params["email"] = user.email
        key = f"connect-account-{user.pk}-{int(user.date_joined.timestamp())}"
        with _stripe_errors("connect account"):
            account = self.client.v1.accounts.create(params=params, options={"idempotency_key": key})
        return account.id

    def connect_onboard(self, *, account_id: str) -> str:
        with _stripe_errors("connect onboarding"):
            link = self.client.v1.account_links.create(
                params={
                    "account": account_id,
                    "type": "account_onboarding",
                    "refresh_url": _absolute(reverse("payments:earnings")),
                    "return_url": _absolute(reverse("payments:connect_return")),
                }
            )
        return link.url

    def connect_onboarded(self, *, account_id: str) -> bool:
        with _stripe_errors("connect status"):
            account = self.client.v1.accounts.retrieve(account_id)
        capabilities = account.get("capabilities") or {}
        return capabilities.get("transfers") == "active"

    def transfer_create(self, *, payout: Payout) -> str:
        with _stripe_errors("transfer"):
            transfer = self.client.v1.transfers.create(
                params={
                    "amount": payout.amount_cents,
                    "currency": payout.currency,
                    "destination": payout.user.connect_account.stripe_account_id,
                    "transfer_group": f"payout-{payout.pk}",
                    "metadata": {"payout_id": str(payout.pk), "user_id": str(payout.user_id)},
                },
                options={"idempotency_key": payout.idempotency_key},
            )
        return transfer.id


class DevProvider:
    """Simulated payments for one machine: no money moves anywhere, and every page says so."""

    name = "dev"

    def checkout_create(self, *, user: User, amount_fiat_cents: int, tokens: int, reference: uuid.UUID) -> Checkout:
        return Checkout(url=reverse("payments:dev_checkout", args=[reference]), session_id=f"dev_cs_{reference.hex}")

    def connect_account_create(self, *, user: User) -> str:
        return f"dev_acct_{user.pk}"

    def connect_onboard(self, *, account_id: str) -> str:
        return reverse("payments:connect_return")

    def connect_onboarded(self, *, account_id: str) -> bool:
        return True

    def transfer_create(self, *, payout: Payout) -> str:
        log.info("event=transfer_simulated", extra={"payout_id": payout.pk, "amount_cents": payout.amount_cents})
        return f"dev_tr_{payout.idempotency_key}"


def provider_get() -> PaymentProvider:
    """Stripe whenever a key is set; the simulated provider only without one, and only where allowed."""
    if conf.stripe_secret_key():
        return StripeProvider(conf.stripe_secret_key())
    if conf.dev_provider_allowed():
        return DevProvider()
    raise PaymentsUnavailable("Payments are not configured on this server (no STRIPE_SECRET_KEY).")


def dev_provider_active() -> bool:
    try:
        return provider_get().name == DevProvider.name
    except PaymentsUnavailable:
        return False


def stripe_event_verify(*, payload: bytes, signature: str) -> dict:
    """The event as a dict, if Stripe signed it with our secret less than 5 minutes ago."""
    secret = conf.stripe_webhook_secret()
    if not secret:
        raise WebhookRefused("Stripe webhooks are not configured on this server (STRIPE_WEBHOOK_SECRET is empty)")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRefused("the payload is not UTF-8") from exc
    try:
        stripe.Webhook.construct_event(text, signature, secret, tolerance=conf.WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRefused(f"invalid Stripe signature: {exc.user_message or exc}") from exc
    except ValueError as exc:
        raise WebhookRefused("the payload is not valid JSON") from exc
    # construct_event's object is not a plain dict all the way down; the verified text is.
    event = json.loads(text)
    if not isinstance(event, dict) or not event.get("id") or not isinstance(event.get("data"), dict):
        raise WebhookRefused("the payload is not a Stripe event")
    return event
