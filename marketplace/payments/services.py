"""Top-ups and Stripe webhooks.

A top-up row exists before Stripe hears of it; its `ref` travels in the Checkout Session's and the payment
intent's metadata, so every later event (completion, refund, dispute) finds it, in whatever order Stripe
delivers them. Each event id is recorded in the same transaction as its effect: a replay finds the row and
changes nothing, and an event whose processing failed is not recorded, so Stripe's retry processes it.

Refunds and card disputes take tokens back (wallet -> payment clearing). They are recorded apart on the
top-up: the refunded amount (cumulative, as `charge.refunded` reports it) and the charge's one dispute (id,
amount, status). What Stripe holds back is min(refunded + disputed while the dispute holds the funds, paid),
and the tokens taken back follow it up and down. Decision for a wallet that no longer holds them (spent on
escrow or renders): debit what is there, never below zero, and record the rest as `TopUp.unrecovered_micro`.
`selectors.wallet_debt_micro` reports it; the account is then flagged (see `selectors.wallet_frozen`) until
an admin settles it: we never reach into escrow owed to providers.

Card disputes, as Stripe runs them: an inquiry (`warning_*` statuses) withdraws nothing and may close
(`warning_closed`) or escalate; a chargeback (`needs_response`, `under_review`) withdraws the disputed amount
(`charge.dispute.created` or `charge.dispute.funds_withdrawn`), then closes `lost` (nothing more moves) or
`won` (`charge.dispute.closed` and `charge.dispute.funds_reinstated`: the tokens come back, first paying off
what the wallet could not give back). Every dispute event carries the whole dispute, so each one is applied
as a state: the status only moves forward (inquiry, chargeback, closed), and an event that is not ahead of
what is recorded changes nothing. Delivery order, replays under new event ids and both closing events are
therefore harmless. `funds_reinstated` alone does not mean won: Stripe also sends it when a lost dispute
overlapped an earlier partial refund, which the cap on the reversal already accounts for.

Each ledger transaction for a reversal after completion takes the next number of the top-up's
`ledger_adjustments` (under the row lock) into its key: a reversal that goes down and up again by the same
amount is a new transfer, never a replay of the earlier one.
"""

from __future__ import annotations

import logging
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.errors import Refused
from marketplace.ledger.models import Account
from marketplace.ledger.services import Leg, account_get, transfer
from marketplace.payments import conf, payouts
from marketplace.payments.locks import account_locked
from marketplace.payments.models import TopUp, WebhookEvent
from marketplace.payments.providers import ProviderError, ProviderOutcomeUnknown, provider_get

log = logging.getLogger("payments")
Kind = Account.Kind


class TopUpRefused(Refused):
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
    topup = TopUp.objects.create(
        user=user,
        amount_cents=amount_cents,
        currency=conf.currency(),
        tokens_micro=topup_tokens_for(amount_cents=amount_cents),
        provider=provider.name,
    )
    try:
        checkout = provider.checkout_create(
            user=user, amount_fiat_cents=amount_cents, tokens=topup.tokens_micro, reference=topup.ref
        )
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


# Stripe's dispute statuses: how far the dispute has got (it never goes back) and whether the disputed
# funds are out of the platform's balance at that point. Closed: won, lost, or an inquiry that never
# withdrew anything (warning_closed, prevented).
_INQUIRY, _CHARGEBACK, _CLOSED = 1, 2, 3
_DISPUTE_STAGES = {
    "warning_needs_response": (_INQUIRY, False),
    "warning_under_review": (_INQUIRY, False),
    "needs_response": (_CHARGEBACK, True),
    "under_review": (_CHARGEBACK, True),
    "won": (_CLOSED, False),
    "warning_closed": (_CLOSED, False),
    "prevented": (_CLOSED, False),
    "lost": (_CLOSED, True),
}
# A status this code does not know: keep the tokens taken back, as for an open chargeback.
_UNKNOWN_STAGE = (_CHARGEBACK, True)


def _dispute_stage(status: str) -> tuple[int, bool]:
    """The stage of a recorded status; "" is no dispute yet."""
    return _DISPUTE_STAGES.get(status, _UNKNOWN_STAGE) if status else (0, False)


def _reversed_cents(topup: TopUp) -> int:
    _, withheld = _dispute_stage(topup.dispute_status)
    return min(topup.refunded_cents + (topup.disputed_cents if withheld else 0), topup.amount_cents)


def _state_of(topup: TopUp) -> str:
    if _dispute_stage(topup.dispute_status)[1]:
        return TopUp.State.DISPUTED
    if topup.refunded_cents:
        return TopUp.State.REFUNDED
    return TopUp.State.COMPLETED if topup.completed_at else TopUp.State.PENDING


def _adjustment_key(topup: TopUp, kind: str) -> str:
    """The next ledger key of this top-up's reversals; the caller holds the row lock and saves the row."""
    topup.ledger_adjustments += 1
    return f"topup:{topup.session_id}:{kind}:{topup.ledger_adjustments}"


@transaction.atomic
def topup_complete(*, ref: object, session_id: str, payment_intent: str, amount_cents: object, currency: object) -> str:
    """Credit a paid top-up once (payment clearing -> artist wallet). Used by the webhook and the dev page.

    Tokens that Stripe already holds back (a refund or dispute that arrived first) are never credited.
    """
    topup = _topup_locked(ref=ref)
    if topup is None:
        log.error(
            "event=topup_unknown: checkout completed for an unknown top-up",
            extra={"topup_ref": str(ref), "session_id": session_id},
        )
        return "unmatched: no top-up with this reference"
    if topup.completed_at is not None:
        return "already credited"
    if topup.session_id and session_id != topup.session_id:
        log.error(
            "event=topup_session_mismatch: the top-up was completed by another checkout session",
            extra={"topup_ref": str(topup.ref), "session_id": session_id, "expected_session_id": topup.session_id},
        )
        return "not credited: session does not match the top-up"
    if amount_cents != topup.amount_cents or str(currency).lower() != topup.currency:
        log.error(
            "event=topup_amount_mismatch: the amount paid is not the top-up's",
            extra={
                "topup_ref": str(topup.ref),
                "amount_cents": amount_cents,
                "currency": currency,
                "expected_amount_cents": topup.amount_cents,
                "expected_currency": topup.currency,
            },
        )
        return "not credited: amount paid does not match the top-up"
    target = _clawback_target(topup)
    credit = topup.tokens_micro - target
    if credit:
        transfer(
            key=f"topup:{session_id}",
            memo=f"top-up {fiat(topup.amount_cents, topup.currency)}",
            legs=[
                Leg(account_get(kind=Kind.PAYMENT_CLEARING), -credit),
                Leg(account_get(kind=Kind.ARTIST_WALLET, owner=topup.user), credit),
            ],
            metadata={"topup": str(topup.ref)},
        )
    topup.session_id = session_id
    topup.payment_intent = payment_intent or topup.payment_intent
    topup.credited_micro = credit
    topup.clawed_back_micro = target
    topup.completed_at = timezone.now()
    topup.state = _state_of(topup)
    topup.save()
    return f"credited {credit} micro-tokens" + (f" ({target} withheld for an earlier reversal)" if target else "")


def _topup_for_reversal(*, ref: object, payment_intent: str) -> TopUp | None:
    topup = _topup_locked(ref=ref, payment_intent=payment_intent)
    if topup is None:
        log.error(
            "event=topup_unknown: a reversal for an unknown top-up, reconcile by hand",
            extra={"topup_ref": str(ref), "payment_intent": payment_intent},
        )
    else:
        topup.payment_intent = topup.payment_intent or payment_intent
    return topup


def _take_back(topup: TopUp, due: int, *, reason: str) -> str:
    wallet = account_locked(kind=Kind.ARTIST_WALLET, owner=topup.user)
    debit = min(due, wallet.balance)
    if debit:
        transfer(
            key=_adjustment_key(topup, "reversal"),
            memo=f"{reason}: top-up {fiat(topup.amount_cents, topup.currency)}",
            legs=[Leg(wallet, -debit), Leg(account_get(kind=Kind.PAYMENT_CLEARING), debit)],
            metadata={"topup": str(topup.ref)},
        )
    topup.unrecovered_micro += due - debit
    topup.clawed_back_micro += due
    outcome = f"debited {debit} micro-tokens"
    if due > debit:
        log.error(
            "event=topup_unrecovered: the top-up was reversed but the wallet lacked the tokens",
            extra={"topup_ref": str(topup.ref), "user_id": topup.user_id, "unrecovered_micro": due - debit},
        )
        outcome += f", {due - debit} unrecovered (account flagged)"
    return outcome


def _give_back(topup: TopUp, owed: int, *, reason: str) -> str:
    # Tokens the wallet never gave back are not credited: they only pay off that debt.
    forgiven = min(owed, topup.unrecovered_micro)
    credit = owed - forgiven
    if credit:
        transfer(
            key=_adjustment_key(topup, "reinstatement"),
            memo=f"{reason}: top-up {fiat(topup.amount_cents, topup.currency)}",
            legs=[
                Leg(account_get(kind=Kind.PAYMENT_CLEARING), -credit),
                Leg(account_get(kind=Kind.ARTIST_WALLET, owner=topup.user), credit),
            ],
            metadata={"topup": str(topup.ref)},
        )
    topup.unrecovered_micro -= forgiven
    topup.clawed_back_micro -= owed
    return f"credited {credit} micro-tokens back" + (f", {forgiven} unrecovered written off" if forgiven else "")


def _reversal_apply(topup: TopUp, *, reason: str) -> str:
    """Take back or give back tokens until they match what Stripe holds back now. Expects the row locked."""
    topup.reversed_cents = _reversed_cents(topup)
    topup.state = _state_of(topup)
    outcome = "no change"
    if topup.completed_at is None:
        # Out of order: nothing was credited yet; completion will withhold these tokens.
        outcome = f"recorded before completion: {topup.reversed_cents} cents will never be credited"
    else:
        change = _clawback_target(topup) - topup.clawed_back_micro
        if change > 0:
            outcome = _take_back(topup, change, reason=reason)
        elif change < 0:
            outcome = _give_back(topup, -change, reason=reason)
    topup.save()
    return outcome


@transaction.atomic
def topup_refund_apply(*, ref: object, payment_intent: str, refunded_cents: int) -> str:
    """Stripe refunded `refunded_cents` (cumulative) of the payment: take the matching tokens back."""
    topup = _topup_for_reversal(ref=ref, payment_intent=payment_intent)
    if topup is None:
        return "unmatched: no top-up for this charge, needs manual reconciliation"
    topup.refunded_cents = min(max(refunded_cents, topup.refunded_cents), topup.amount_cents)
    return _reversal_apply(topup, reason="refunded")


@transaction.atomic
def topup_dispute_apply(*, ref: object, payment_intent: str, dispute_id: str, disputed_cents: int, status: str) -> str:
    """Record the charge's card dispute as Stripe describes it now; move tokens if it changed what is withheld."""
    if not dispute_id or not status:
        log.error(
            "event=dispute_incomplete: a dispute event without an id or a status",
            extra={"payment_intent": payment_intent},
        )
        return "not applied: the dispute has no id or no status, needs manual reconciliation"
    topup = _topup_for_reversal(ref=ref, payment_intent=payment_intent)
    if topup is None:
        return "unmatched: no top-up for this charge, needs manual reconciliation"
    if topup.dispute_id and dispute_id != topup.dispute_id:
        # Stripe allows one dispute per charge: anything else is not ours to guess.
        log.error(
            "event=dispute_mismatch: an event for another dispute of the top-up, reconcile by hand",
            extra={"topup_ref": str(topup.ref), "dispute_id": dispute_id, "expected_dispute_id": topup.dispute_id},
        )
        return f"not applied: the top-up already has dispute {topup.dispute_id}, needs manual reconciliation"
    if status not in _DISPUTE_STAGES:
        log.warning(
            "event=dispute_status_unknown: treated as an open chargeback",
            extra={"topup_ref": str(topup.ref), "dispute_status": status},
        )
    if _dispute_stage(status)[0] <= _dispute_stage(topup.dispute_status)[0]:
        return f"no change: dispute {dispute_id} is already {topup.dispute_status}"
    topup.dispute_id = dispute_id
    topup.disputed_cents = max(disputed_cents, 0)
    topup.dispute_status = status
    return _reversal_apply(topup, reason=topup.get_dispute_status_display().lower())


# --- Stripe events --------------------------------------------------------------------------


def _metadata_ref(obj: dict) -> object:
    return (obj.get("metadata") or {}).get("topup_ref")


def _on_checkout_completed(session: dict) -> str:
    if session.get("payment_status") != "paid":
        return "not paid yet: waiting for checkout.session.async_payment_succeeded"
    return topup_complete(
        ref=_metadata_ref(session),
        session_id=str(session.get("id", "")),
        payment_intent=str(session.get("payment_intent") or ""),
        amount_cents=session.get("amount_total"),
        currency=session.get("currency"),
    )


def _on_charge_refunded(charge: dict) -> str:
    return topup_refund_apply(
        ref=_metadata_ref(charge),
        payment_intent=str(charge.get("payment_intent") or ""),
        refunded_cents=int(charge.get("amount_refunded") or 0),
    )


def _on_charge_dispute(dispute: dict) -> str:
    return topup_dispute_apply(
        ref=_metadata_ref(dispute),
        payment_intent=str(dispute.get("payment_intent") or ""),
        dispute_id=str(dispute.get("id") or ""),
        disputed_cents=int(dispute.get("amount") or 0),
        status=str(dispute.get("status") or ""),
    )


_HANDLERS = {
    "checkout.session.completed": _on_checkout_completed,
    "checkout.session.async_payment_succeeded": _on_checkout_completed,
    "charge.refunded": _on_charge_refunded,
    # Each carries the whole dispute; applied as a state, so which of them arrive, and in what order, is moot.
    "charge.dispute.created": _on_charge_dispute,
    "charge.dispute.funds_withdrawn": _on_charge_dispute,
    "charge.dispute.funds_reinstated": _on_charge_dispute,
    "charge.dispute.closed": _on_charge_dispute,
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
    log.info("event=stripe_event", extra={"stripe_event_id": str(event["id"]), "type": event_type, "outcome": outcome})
    return outcome
