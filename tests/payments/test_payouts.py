"""Payouts: tokens leave the available balance before Stripe is called; refusals give them back."""

import uuid
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import requests
from django.utils import timezone

from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.services import Leg, account_get, transfer
from marketplace.payments.models import ConnectAccount, Payout
from marketplace.payments.payouts import PayoutRefused, payout_request, payouts_resend
from tests.payments.helpers import M, available, balance, post_event, stripe_event

pytestmark = pytest.mark.django_db
TRANSFERS_URL = "https://api.stripe.com/v1/transfers"


def give_available(user, amount: int) -> None:
    """Available earnings, as if frames had settled and matured (clearing stands in for the escrow path)."""
    transfer(
        key=f"test-earn:{uuid.uuid4()}",
        memo="test earnings",
        legs=[
            Leg(account_get(kind=Account.Kind.PAYMENT_CLEARING), -amount),
            Leg(account_get(kind=Account.Kind.PROVIDER_AVAILABLE, owner=user), amount),
        ],
    )


@pytest.fixture
def earner(provider):
    ConnectAccount.objects.create(user=provider, stripe_account_id="acct_test_1", onboarded=True)
    give_available(provider, 5_000 * M)
    return provider


def key() -> str:
    return uuid.uuid4().hex


def test_a_payout_moves_the_tokens_then_creates_a_transfer_with_its_idempotency_key(stripe_on, http, earner):
    http.post(TRANSFERS_URL, json={"id": "tr_test_1", "object": "transfer"})
    payout = payout_request(user=earner, amount_micro=2_000 * M, request_key=key())

    assert payout.state == Payout.State.SENT and payout.transfer_id == "tr_test_1"
    (call,) = http.calls
    assert call.request.headers["Idempotency-Key"] == payout.idempotency_key
    params = {k: v[0] for k, v in parse_qs(call.request.body).items()}
    assert params["amount"] == "2000"  # cents: one token per cent
    assert params["currency"] == "usd"
    assert params["destination"] == "acct_test_1"
    assert params["metadata[payout_id]"] == str(payout.pk)
    assert available(earner) == 3_000 * M
    assert balance(Account.Kind.PAYOUT_CLEARING) == 2_000 * M
    assert LedgerTransaction.objects.filter(idempotency_key=f"payout:{payout.pk}").exists()
    assert ledger.ledger_total() == 0


def test_a_stripe_refusal_returns_the_tokens(stripe_on, http, earner):
    http.post(
        TRANSFERS_URL,
        status=400,
        json={"error": {"type": "invalid_request_error", "message": "Insufficient funds in your Stripe balance"}},
    )
    payout = payout_request(user=earner, amount_micro=2_000 * M, request_key=key())

    assert payout.state == Payout.State.FAILED
    assert "Insufficient funds" in payout.error
    assert available(earner) == 5_000 * M
    assert balance(Account.Kind.PAYOUT_CLEARING) == 0
    assert LedgerTransaction.objects.filter(idempotency_key=f"payout-return:{payout.pk}").exists()
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_an_unclear_answer_keeps_the_payout_and_the_resend_uses_the_same_key(stripe_on, http, earner):
    http.post(TRANSFERS_URL, body=requests.ConnectionError("connection reset"))
    payout = payout_request(user=earner, amount_micro=2_000 * M, request_key=key())
    assert payout.state == Payout.State.REQUESTED  # the transfer may exist: never give the tokens back here
    assert available(earner) == 3_000 * M

    http.replace("POST", TRANSFERS_URL, json={"id": "tr_test_2", "object": "transfer"})
    assert payouts_resend(now=timezone.now() + timedelta(minutes=5)) == 1
    payout.refresh_from_db()
    assert payout.state == Payout.State.SENT and payout.transfer_id == "tr_test_2"
    keys = {call.request.headers["Idempotency-Key"] for call in http.calls}
    assert keys == {payout.idempotency_key}
    assert available(earner) == 3_000 * M


def test_a_stuck_payout_is_not_resent_after_the_idempotency_window(stripe_on, http, earner):
    http.post(TRANSFERS_URL, body=requests.ConnectionError("connection reset"))
    payout_request(user=earner, amount_micro=2_000 * M, request_key=key())
    assert payouts_resend(now=timezone.now() + timedelta(hours=24)) == 0
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (5_001 * M, "only 5,000.00 are available"),
        (-100 * M, "must be positive"),
        (0, "must be positive"),
        (1.5, "whole number of tokens"),
        ("1.5", "whole number of tokens"),
        (Decimal("1500"), "whole number of tokens"),
        (1_500 * M + 1, "whole number of cents"),
        (999 * M, "smallest payout is 1,000.00 tokens"),
    ],
)
def test_it_refuses_bad_amounts_and_moves_nothing(stripe_on, http, earner, amount, message):
    with pytest.raises(PayoutRefused, match=message):
        payout_request(user=earner, amount_micro=amount, request_key=key())
    assert not Payout.objects.exists() and not http.calls
    assert available(earner) == 5_000 * M


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("1.5", "whole number of tokens"),
        ("-5", "must be positive"),
        ("0", "must be positive"),
        ("999999", "only 5,000.00 are available"),
        ("", "This field is required"),
    ],
)
def test_the_payout_form_shows_a_clear_error_and_moves_nothing(dev_payments, client, earner, tokens, message):
    client.force_login(earner)
    response = client.post("/payments/payouts/", {"tokens": tokens, "request_key": key()})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Payout.objects.exists()
    assert available(earner) == 5_000 * M


def test_a_double_click_gives_one_payout(stripe_on, http, earner):
    http.post(TRANSFERS_URL, json={"id": "tr_test_1", "object": "transfer"})
    request_key = key()
    first = payout_request(user=earner, amount_micro=2_000 * M, request_key=request_key)
    second = payout_request(user=earner, amount_micro=2_000 * M, request_key=request_key)
    assert first.pk == second.pk
    assert len(http.calls) == 1
    assert available(earner) == 3_000 * M


def test_a_second_payout_waits_until_the_first_is_done(stripe_on, http, earner):
    http.post(TRANSFERS_URL, body=requests.ConnectionError("connection reset"))
    payout_request(user=earner, amount_micro=1_000 * M, request_key=key())
    with pytest.raises(PayoutRefused, match="already being sent"):
        payout_request(user=earner, amount_micro=1_000 * M, request_key=key())
    assert Payout.objects.count() == 1
    assert available(earner) == 4_000 * M


def test_it_refuses_a_provider_who_has_not_onboarded(stripe_on, http, provider):
    give_available(provider, 5_000 * M)
    with pytest.raises(PayoutRefused, match="onboarding"):
        payout_request(user=provider, amount_micro=1_000 * M, request_key=key())
    assert available(provider) == 5_000 * M


def test_artists_have_no_payouts(stripe_on, client, artist):
    with pytest.raises(PayoutRefused, match="Only GPU provider"):
        payout_request(user=artist, amount_micro=1_000 * M, request_key=key())
    client.force_login(artist)
    assert client.get("/payments/earnings/").status_code == 403
    assert client.post("/payments/payouts/", {"tokens": "1000", "request_key": key()}).status_code == 403


def test_a_reversed_transfer_returns_the_tokens_once(stripe_on, http, client, earner):
    http.post(TRANSFERS_URL, json={"id": "tr_test_1", "object": "transfer"})
    payout = payout_request(user=earner, amount_micro=2_000 * M, request_key=key())
    event = stripe_event("transfer.reversed", {"id": "tr_test_1", "object": "transfer", "amount_reversed": 2000})
    assert post_event(client, event).status_code == 200
    assert post_event(client, stripe_event("transfer.reversed", event["data"]["object"])).status_code == 200
    payout.refresh_from_db()
    assert payout.state == Payout.State.RETURNED
    assert available(earner) == 5_000 * M
    assert ledger.ledger_total() == 0


def test_stripe_connect_onboarding_creates_an_express_account_and_a_link(stripe_on, http, client, provider):
    http.post("https://api.stripe.com/v1/accounts", json={"id": "acct_new", "object": "account"})
    http.post(
        "https://api.stripe.com/v1/account_links",
        json={"object": "account_link", "url": "https://connect.stripe.com/setup/e/acct_new/abc"},
    )
    http.get(
        "https://api.stripe.com/v1/accounts/acct_new",
        json={"id": "acct_new", "object": "account", "capabilities": {"transfers": "active"}},
    )
    client.force_login(provider)

    response = client.post("/payments/connect/onboard/")
    assert response["Location"] == "https://connect.stripe.com/setup/e/acct_new/abc"
    create, link = http.calls[0].request, http.calls[1].request
    assert create.headers["Idempotency-Key"].startswith(f"connect-account-{provider.pk}-")
    create_params = {k: v[0] for k, v in parse_qs(create.body).items()}
    assert create_params["type"] == "express"
    assert create_params["capabilities[transfers][requested]"] == "true"
    link_params = {k: v[0] for k, v in parse_qs(link.body).items()}
    assert link_params["account"] == "acct_new" and link_params["type"] == "account_onboarding"
    assert link_params["return_url"].endswith("/payments/connect/return/")
    assert not ConnectAccount.objects.get(user=provider).onboarded

    client.get("/payments/connect/return/")
    assert ConnectAccount.objects.get(user=provider).onboarded


def test_the_account_updated_webhook_marks_onboarding_done(stripe_on, client, provider):
    ConnectAccount.objects.create(user=provider, stripe_account_id="acct_1")
    event = stripe_event(
        "account.updated", {"id": "acct_1", "object": "account", "capabilities": {"transfers": "active"}}
    )
    post_event(client, event)
    assert ConnectAccount.objects.get(user=provider).onboarded


def test_the_simulated_provider_onboards_and_pays_out_locally(dev_payments, client, provider):
    give_available(provider, 5_000 * M)
    client.force_login(provider)
    client.post("/payments/connect/onboard/", follow=True)
    page = client.get("/payments/earnings/")
    assert "Payouts are SIMULATED" in page.content.decode()
    request_key = page.context["form"].initial["request_key"]
    client.post("/payments/payouts/", {"tokens": "1,500", "request_key": request_key})
    client.post("/payments/payouts/", {"tokens": "1,500", "request_key": request_key})  # double click
    payout = Payout.objects.get()
    assert payout.state == Payout.State.SENT and payout.transfer_id.startswith("dev_tr_")
    assert available(provider) == 3_500 * M


def test_the_default_payout_minimum_is_about_a_mid_range_gpus_day(settings):
    from marketplace.jobs import conf as jobs_conf
    from marketplace.payments import conf

    del settings.PAYOUT_MIN_MICRO
    assert conf.payout_min_micro() == conf.PAYOUT_MIN_TOKENS * M == 3_000 * M
    # 50 reference machines (the assumed mid-range GPU), busy 12 h, at the default rate, less a 10 % fee.
    day = 50 * 12 * jobs_conf.MARKET_RATE_MICRO_PER_REFERENCE_HOUR * 9 // 10
    assert 0.8 < day / conf.payout_min_micro() < 1.2
