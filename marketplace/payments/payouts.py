"""Provider payouts and their destination accounts (Stripe Connect Express, or simulated).

A payout moves tokens PROVIDER_AVAILABLE -> PAYOUT_CLEARING (key `payout:<id>`) and commits BEFORE the
provider is called, so a crash between the two leaves a `requested` payout whose tokens are accounted
for, never money sent without a ledger entry. Then:
  - the provider accepts   -> `sent` (transfer id stored);
  - the provider refuses   -> `failed`, and PAYOUT_CLEARING -> PROVIDER_AVAILABLE (`payout-return:<id>`);
  - no clear answer        -> stays `requested`; `payouts_resend` re-sends it with the same Stripe
                              Idempotency-Key, which can never create a second transfer.
A sent transfer that Stripe later reverses (`transfer.reversed`) is `returned` the same way.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.errors import Refused
from marketplace.ledger.models import Account
from marketplace.ledger.services import Leg, account_get, transfer
from marketplace.money import tokens
from marketplace.payments import conf
from marketplace.payments.locks import account_locked
from marketplace.payments.models import ConnectAccount, Payout
from marketplace.payments.providers import ProviderError, ProviderOutcomeUnknown, provider_get

log = logging.getLogger("payments")
Kind = Account.Kind
State = Payout.State


class PayoutRefused(Refused):
    """A payout request that cannot be made; no tokens moved."""


# --- Connect onboarding ---------------------------------------------------------------------


def connect_onboard_start(*, user) -> str:
    """The URL where the provider (re)starts onboarding; creates the payout account on first use."""
    if not user.is_provider:
        raise PayoutRefused("Only GPU provider accounts receive payouts.")
    provider = provider_get()
    account = ConnectAccount.objects.filter(user=user).first()
    if account is None:
        account_id = provider.connect_account_create(user=user)
        account, _ = ConnectAccount.objects.get_or_create(user=user, defaults={"stripe_account_id": account_id})
    return provider.connect_onboard(account_id=account.stripe_account_id)


def connect_refresh(*, user) -> ConnectAccount | None:
    """Ask the provider whether onboarding is finished (called when the provider returns to us)."""
    account = ConnectAccount.objects.filter(user=user).first()
    if account is None:
        return None
    onboarded = provider_get().connect_onboarded(account_id=account.stripe_account_id)
    ConnectAccount.objects.filter(pk=account.pk).update(onboarded=onboarded, updated_at=timezone.now())
    account.onboarded = onboarded
    return account


def on_account_updated(account: dict) -> str:
    onboarded = (account.get("capabilities") or {}).get("transfers") == "active"
    changed = ConnectAccount.objects.filter(stripe_account_id=str(account.get("id", ""))).update(
        onboarded=onboarded, updated_at=timezone.now()
    )
    return f"connect account onboarded={onboarded}" if changed else "ignored: not one of our connect accounts"


# --- payouts --------------------------------------------------------------------------------


def _check_amount(amount_micro: object) -> int:
    if type(amount_micro) is not int:
        raise PayoutRefused("The amount must be a whole number of tokens.")
    if amount_micro <= 0:
        raise PayoutRefused("The amount must be positive.")
    if amount_micro % conf.micro_per_cent():
        raise PayoutRefused("The amount must be a whole number of cents' worth of tokens.")
    if amount_micro < conf.payout_min_micro():
        raise PayoutRefused(f"The smallest payout is {tokens(conf.payout_min_micro())} tokens.")
    return amount_micro


@transaction.atomic
def _payout_open(*, user, amount_micro: int, request_key: str) -> tuple[Payout, bool]:
    """Create the payout and move its tokens to payout clearing. Locks the provider's available account,
    so one provider's requests run one at a time; (payout, created)."""
    if not ConnectAccount.objects.filter(user=user, onboarded=True).exists():
        raise PayoutRefused("Finish payout onboarding (Stripe Connect) before requesting a payout.")
    available = account_locked(kind=Kind.PROVIDER_AVAILABLE, owner=user)
    duplicate = Payout.objects.filter(user=user, request_key=request_key).first()
    if duplicate is not None:
        return duplicate, False
    if Payout.objects.filter(user=user, state=State.REQUESTED).exists():
        raise PayoutRefused("A payout is already being sent; wait until it is done.")
    if amount_micro > available.balance:
        raise PayoutRefused(
            f"You asked for {tokens(amount_micro)} tokens but only {tokens(available.balance)} are available."
        )
    provider = provider_get()
    try:
        with transaction.atomic():
            payout = Payout.objects.create(
                user=user,
                amount_micro=amount_micro,
                currency=conf.currency(),
                amount_cents=amount_micro // conf.micro_per_cent(),
                provider=provider.name,
                request_key=request_key,
            )
    except IntegrityError as exc:  # the database's own guard, should the lock ever be bypassed
        raise PayoutRefused("A payout is already being sent; wait until it is done.") from exc
    transfer(
        key=f"payout:{payout.pk}",
        memo=f"payout {payout.pk}",
        legs=[Leg(available, -amount_micro), Leg(account_get(kind=Kind.PAYOUT_CLEARING), amount_micro)],
        metadata={"payout": payout.pk},
    )
    return payout, True


def payout_request(*, user, amount_micro: int, request_key: str) -> Payout:
    """Pay `amount_micro` of the provider's available tokens out. A repeated `request_key` (double click)
    returns the first payout and sends nothing again."""
    if not user.is_provider:
        raise PayoutRefused("Only GPU provider accounts receive payouts.")
    if not isinstance(request_key, str) or not 8 <= len(request_key) <= 64:
        raise PayoutRefused("The payout form expired; reload the page and try again.")
    _check_amount(amount_micro)
    payout, created = _payout_open(user=user, amount_micro=amount_micro, request_key=request_key)
    if created:
        payout = payout_send(payout_id=payout.pk)
    return payout


def payout_send(*, payout_id: int) -> Payout:
    """Call the provider for a requested payout (outside any transaction) and record the answer."""
    payout = Payout.objects.select_related("user__connect_account").get(pk=payout_id)
    if payout.state != State.REQUESTED:
        return payout
    try:
        transfer_id = provider_get().transfer_create(payout=payout)
    except ProviderOutcomeUnknown as exc:
        log.warning(
            "event=payout_outcome_unknown: it stays requested and will be re-sent",
            extra={"payout_id": payout.pk, "error": str(exc)},
        )
        Payout.objects.filter(pk=payout.pk, state=State.REQUESTED).update(error=str(exc))
    except ProviderError as exc:
        _payout_return(payout_id=payout.pk, current=State.REQUESTED, target=State.FAILED, error=str(exc))
    else:
        Payout.objects.filter(pk=payout.pk, state=State.REQUESTED).update(
            state=State.SENT, transfer_id=transfer_id, sent_at=timezone.now(), error=""
        )
    return Payout.objects.get(pk=payout.pk)


@transaction.atomic
def _payout_return(*, payout_id: int, current: str, target: str, error: str) -> bool:
    """Give the tokens back (payout clearing -> available) once, moving the payout current -> target."""
    if not Payout.objects.filter(pk=payout_id, state=current).update(
        state=target, error=error, returned_at=timezone.now()
    ):
        return False
    payout = Payout.objects.select_related("user").get(pk=payout_id)
    transfer(
        key=f"payout-return:{payout.pk}",
        memo=f"payout {payout.pk} {payout.get_state_display().lower()}",
        legs=[
            Leg(account_get(kind=Kind.PAYOUT_CLEARING), -payout.amount_micro),
            Leg(account_get(kind=Kind.PROVIDER_AVAILABLE, owner=payout.user), payout.amount_micro),
        ],
        metadata={"payout": payout.pk},
    )
    return True


def on_transfer_reversed(stripe_transfer: dict) -> str:
    payout = Payout.objects.filter(transfer_id=str(stripe_transfer.get("id", ""))).first()
    if payout is None:
        return "ignored: not one of our payouts"
    returned = _payout_return(
        payout_id=payout.pk, current=State.SENT, target=State.RETURNED, error="the transfer was reversed by Stripe"
    )
    return f"payout {payout.pk} returned" if returned else f"payout {payout.pk} already {payout.state}"


def payouts_resend(*, now=None) -> int:
    """Re-send payouts stuck in `requested` (unclear provider answer, or a crash before the call).

    Only inside Stripe's 24 h idempotency window: after it a re-send could pay twice, so older ones are
    left for an admin (logged)."""
    now = now or timezone.now()
    stuck = Payout.objects.filter(
        state=State.REQUESTED, created_at__lte=now - timedelta(seconds=conf.PAYOUT_RESEND_AFTER_SECONDS)
    )
    too_old = now - timedelta(hours=conf.PAYOUT_RESEND_WITHIN_HOURS)
    for payout_id in stuck.filter(created_at__lt=too_old).values_list("pk", flat=True):
        log.error(
            "event=payout_stuck: past the idempotency window, reconcile with Stripe by hand",
            extra={"payout_id": payout_id},
        )
    sent = 0
    for payout_id in stuck.filter(created_at__gte=too_old).values_list("pk", flat=True):
        sent += payout_send(payout_id=payout_id).state == State.SENT
    return sent
