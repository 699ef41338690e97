"""Top-ups and Stripe webhooks.

A top-up row exists before Stripe hears of it; its `ref` travels in the Checkout Session's and the payment
intent's metadata, so every later event (completion, refund, dispute) finds it, in whatever order Stripe
delivers them. Each event id is recorded in the same transaction as its effect: a replay finds the row and
changes nothing, and an event whose processing failed is not recorded, so Stripe's retry processes it.

Refunds and card disputes take tokens back (wallet -> payment clearing). Decision for a wallet that no
longer holds them (spent on escrow or renders): debit what is there, never below zero, and record the rest
as `TopUp.unrecovered_micro`. `selectors.wallet_debt_micro` reports it; the account is then flagged (see
`selectors.wallet_frozen`) until an admin settles it: we never reach into escrow owed to providers.
"""
from __future__ import annotations

import logging
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.ledger.models import Account
from marketplace.ledger.services import Leg, account_get, transfer
from marketplace.payments import conf, payouts
from marketplace.payments.locks import account_locked
from marketplace.payments.models import TopUp, WebhookEvent
from marketplace.payments.providers import ProviderError, ProviderOutcomeUnknown, provider_get

log = logging.getLogger("payments")
Kind = Account.Kind


class TopUpRefused(Exception):
    """A top-up that cannot start; nothing was stored."""


def fiat(cents: int, currency: str | None = None) -> str:
    return f"{cents // 100:,}.{cents % 100:02d} {(currency or conf.currency()).upper()}"


def topup_tokens_for(*, amount_cents: int) -> int:
    return amount_cents * conf.micro_per_cent()


def topup_start(*, user, amount_cents: int) -> tuple[TopUp, str]:
    """Open a payment page for `amount_cents`; returns the pending top-up and the page's URL."""
    if not user.is_artist:
        raise TopUpRefused("Only artist accounts buy tokens.")
    if type(amount_cents) is not int:
        raise TopUpRefused("The amount must be a whole number of cents.")
    low, high = conf.topup_min_cents(), conf.topup_max_cents()
    if not low <= amount_cents <= high:
        raise TopUpRefused(f"A top-up is between {fiat(low)} and {fiat(high)}.")
    provider = provider_get()
    # Committed before the provider is called, so that every event about this payment finds its row.
    topup = TopUp.objects.create(user=user, amount_cents=amount_cents, currency=conf.currency(),
                                 tokens_micro=topup_tokens_for(amount_cents=amount_cents), provider=provider.name)
    try:
        checkout = provider.checkout_create(user=user, amount_fiat_cents=amount_cents, tokens=topup.tokens_micro,
                                            reference=topup.ref)
    except (ProviderError, ProviderOutcomeUnknown) as exc:
        raise TopUpRefused(f"The payment page could not be opened, please try again: {exc}") from exc
    TopUp.objects.filter(pk=topup.pk).update(session_id=checkout.session_id)
    topup.session_id = checkout.session_id
    return topup, checkout.url


def _topup_locked(*, ref: object = None, payment_intent: str = "") -> TopUp | None:
    qs = TopUp.objects.select_for_update()
    try:
        topup = qs.filter(ref=uuid.UUID(str(ref))).first() if ref else None
    except ValueError:
        topup = None
    if topup is None and payment_intent:
        topup = qs.filter(payment_intent=payment_intent).first()
    return topup


def _clawback_target(topup: TopUp) -> int:
    return topup.tokens_micro * topup.reversed_cents // topup.amount_cents


@transaction.atomic
def topup_complete(*, ref: object, session_id: str, payment_intent: str, amount_cents: object,
                   currency: object) -> str:
    """Credit a paid top-up once (payment clearing -> artist wallet). Used by the webhook and the dev page.

    Tokens that Stripe already took back (a refund that arrived first) are never credited.
    """
    topup = _topup_locked(ref=ref)
    if topup is None:
        log.error("checkout completed for an unknown top-up ref=%s session=%s", ref, session_id)
        return "unmatched: no top-up with this reference"
    if topup.completed_at is not None:
        return "already credited"
    if topup.session_id and session_id != topup.session_id:
        log.error("top-up %s completed by session %s, expected %s", topup.ref, session_id, topup.session_id)
        return "not credited: session does not match the top-up"
    if amount_cents != topup.amount_cents or str(currency).lower() != topup.currency:
        log.error("top-up %s paid %s %s, expected %s %s", topup.ref, amount_cents, currency, topup.amount_cents,
                  topup.currency)
        return "not credited: amount paid does not match the top-up"
    target = _clawback_target(topup)
    credit = topup.tokens_micro - target
    if credit:
        transfer(key=f"topup:{session_id}", memo=f"top-up {fiat(topup.amount_cents, topup.currency)}",
                 legs=[Leg(account_get(kind=Kind.PAYMENT_CLEARING), -credit),
                       Leg(account_get(kind=Kind.ARTIST_WALLET, owner=topup.user), credit)],
                 metadata={"topup": str(topup.ref)})
    topup.session_id = session_id
    topup.payment_intent = payment_intent or topup.payment_intent
    topup.credited_micro = credit
    topup.clawed_back_micro = target
    topup.completed_at = timezone.now()
    if topup.state == TopUp.State.PENDING:
        topup.state = TopUp.State.COMPLETED
    topup.save()
    return f"credited {credit} micro-tokens" + (f" ({target} withheld for an earlier reversal)" if target else "")


@transaction.atomic
def topup_reverse(*, ref: object, payment_intent: str, reversed_cents: int, state: str) -> str:
    """Stripe took `reversed_cents` (cumulative) back: take the matching tokens back, never below zero."""
    topup = _topup_locked(ref=ref, payment_intent=payment_intent)
    if topup is None:
        log.error("reversal for an unknown top-up ref=%s payment_intent=%s: reconcile by hand", ref, payment_intent)
        return "unmatched: no top-up for this charge, needs manual reconciliation"
    topup.payment_intent = topup.payment_intent or payment_intent
    topup.state = state
    topup.reversed_cents = min(max(reversed_cents, topup.reversed_cents), topup.amount_cents)
    if topup.completed_at is None:
        # Out of order: nothing was credited yet; completion will withhold these tokens.
        topup.save()
        return f"recorded before completion: {topup.reversed_cents} cents will never be credited"
    due = _clawback_target(topup) - topup.clawed_back_micro
    outcome = "no change"
    if due > 0:
        wallet = account_locked(kind=Kind.ARTIST_WALLET, owner=topup.user)
        debit = min(due, wallet.balance)
        if debit:
            transfer(key=f"topup-reversal:{topup.session_id}:{topup.reversed_cents}",
                     memo=f"{topup.get_state_display().lower()}: top-up {fiat(topup.amount_cents, topup.currency)}",
                     legs=[Leg(wallet, -debit), Leg(account_get(kind=Kind.PAYMENT_CLEARING), debit)],
                     metadata={"topup": str(topup.ref)})
        topup.unrecovered_micro += due - debit
        topup.clawed_back_micro += due
        outcome = f"debited {debit} micro-tokens"
        if due > debit:
            log.error("top-up %s reversed but wallet of user %s lacked %s micro-tokens", topup.ref, topup.user_id,
                      due - debit)
            outcome += f", {due - debit} unrecovered (account flagged)"
    topup.save()
    return outcome


# --- Stripe events --------------------------------------------------------------------------

def _metadata_ref(obj: dict) -> object:
    return (obj.get("metadata") or {}).get("topup_ref")


def _on_checkout_completed(session: dict) -> str:
    if session.get("payment_status") != "paid":
        return "not paid yet: waiting for checkout.session.async_payment_succeeded"
    return topup_complete(ref=_metadata_ref(session), session_id=str(session.get("id", "")),
                          payment_intent=str(session.get("payment_intent") or ""),
                          amount_cents=session.get("amount_total"), currency=session.get("currency"))


def _on_charge_refunded(charge: dict) -> str:
    return topup_reverse(ref=_metadata_ref(charge), payment_intent=str(charge.get("payment_intent") or ""),
                         reversed_cents=int(charge.get("amount_refunded") or 0), state=TopUp.State.REFUNDED)


def _on_charge_dispute_created(dispute: dict) -> str:
    return topup_reverse(ref=_metadata_ref(dispute), payment_intent=str(dispute.get("payment_intent") or ""),
                         reversed_cents=int(dispute.get("amount") or 0), state=TopUp.State.DISPUTED)


_HANDLERS = {
    "checkout.session.completed": _on_checkout_completed,
    "checkout.session.async_payment_succeeded": _on_checkout_completed,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": _on_charge_dispute_created,
    "account.updated": payouts.on_account_updated,
    "transfer.reversed": payouts.on_transfer_reversed,
}


def webhook_event_process(*, event: dict) -> str:
    """Apply one verified Stripe event once. Returns what it did, for the log and the response."""
    event_type = str(event.get("type", ""))
    obj = event["data"].get("object") or {}
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint: losing the race for the id leaves the outer one usable
                record = WebhookEvent.objects.create(event_id=str(event["id"]), type=event_type[:100])
        except IntegrityError:
            return "replay: event already processed"
        handler = _HANDLERS.get(event_type)
        outcome = handler(obj) if handler else "ignored: not an event this marketplace handles"
        WebhookEvent.objects.filter(pk=record.pk).update(processed_at=timezone.now(), outcome=outcome)
    log.info("stripe event=%s type=%s outcome=%s", event["id"], event_type, outcome)
    return outcome
