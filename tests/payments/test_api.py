"""The payments API: artists' wallet and top-ups, providers' earnings and payouts. Refusals move no money."""

import uuid
from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.accounts.models import User
from marketplace.accounts.services import user_create
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.services import hold_escrow
from marketplace.payments import services
from marketplace.payments.earnings import earnings_mature
from marketplace.payments.models import ConnectAccount, Payout, TopUp
from tests.fixtures.api import bearer, session
from tests.fixtures.personas import PASSWORD
from tests.payments.helpers import (
    WEBHOOK_SECRET,
    M,
    available,
    balance,
    charge_refunded,
    pending,
    post_event,
    settled_frame,
    wallet,
)

pytestmark = pytest.mark.django_db
PRICE = 3_000 * M


def money_snapshot(*users) -> tuple:
    """Every balance a refusal must leave alone, plus the number of ledger transactions."""
    return (
        LedgerTransaction.objects.count(),
        balance(Account.Kind.PAYOUT_CLEARING),
        *(ledger.user_balances(user=u) for u in users),
    )


@pytest.fixture
def earner(artist, provider):
    """A provider with one matured frame (its share available) and one fresh one (pending), onboarded."""
    settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=timezone.now() - timedelta(hours=73))
    settled_frame(artist=artist, provider=provider, price=PRICE)
    assert earnings_mature() == 1
    ConnectAccount.objects.create(user=provider, stripe_account_id="dev_acct_test", onboarded=True)
    return provider


# --- artists: wallet and top-ups --------------------------------------------------------------


def test_an_artist_tops_up_through_the_returned_page_and_sees_the_wallet(dev_payments, artist, client):
    api = bearer(artist)
    started = api.post("/api/v1/topups/", {"amount_cents": 1_500}, format="json")
    assert started.status_code == 201, started.content
    body = started.json()
    ref = body["topup"]["ref"]
    assert body["topup"]["state"] == TopUp.State.PENDING and body["topup"]["tokens_micro"] == 1_500 * M
    assert body["checkout_url"] == f"http://testserver/payments/dev/checkout/{ref}/"
    assert api.get(f"/api/v1/topups/{ref}/").json()["state"] == TopUp.State.PENDING

    client.force_login(artist)  # the simulated payment page, as the buyer's browser would open it
    assert client.post(urlparse(body["checkout_url"]).path).status_code == 302
    hold_escrow(artist=artist, job_ref="job:test", amount=400 * M, key="test-hold")

    topup = api.get(f"/api/v1/topups/{ref}/").json()
    assert (topup["state"], topup["credited_micro"]) == (TopUp.State.COMPLETED, 1_500 * M)
    shown = api.get("/api/v1/wallet/").json()
    assert shown == {
        "wallet_micro": 1_100 * M,
        "escrow_micro": 400 * M,
        "debt_micro": 0,
        "frozen": False,
        "wallet_tokens": "1100.00",
        "escrow_tokens": "400.00",
        "debt_tokens": "0.00",
        "topups": [topup],
    }
    assert wallet(artist) == 1_100 * M


def test_a_wallet_that_owes_a_refund_is_shown_frozen(dev_payments, artist, client):
    topup, checkout_url = services.topup_start(user=artist, amount_cents=1_000)
    client.force_login(artist)
    client.post(checkout_url)  # paid on the simulated page
    hold_escrow(artist=artist, job_ref="job:test", amount=600 * M, key="test-hold")  # spent before the refund
    dev_payments.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    topup.refresh_from_db()
    assert post_event(client, charge_refunded(topup, amount_refunded=1_000)).status_code == 200

    shown = session(artist).get("/api/v1/wallet/").json()
    assert (shown["wallet_micro"], shown["escrow_micro"]) == (0, 600 * M)
    assert (shown["debt_micro"], shown["frozen"]) == (600 * M, True)
    assert shown["topups"][0]["state"] == TopUp.State.REFUNDED and shown["topups"][0]["unrecovered_micro"] == 600 * M


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (-500, "between"),
        (0, "between"),
        (499, "between"),
        (100_001, "between"),
        (12.5, "whole number of cents"),
        (1_500.0, "whole number of cents"),
        ("1500", "whole number of cents"),
        (True, "whole number of cents"),
        ([1_500], "whole number of cents"),
    ],
    ids=["negative", "zero", "below-min", "above-max", "fraction", "float", "string", "boolean", "list"],
)
def test_a_bad_topup_amount_is_a_400_with_the_reason_and_stores_nothing(dev_payments, artist, amount, message):
    response = bearer(artist).post("/api/v1/topups/", {"amount_cents": amount}, format="json")
    assert response.status_code == 400 and message in response.json()["detail"]
    assert not TopUp.objects.exists()


def test_a_topup_without_an_amount_or_as_a_form_is_refused(dev_payments, artist):
    api = bearer(artist)
    missing = api.post("/api/v1/topups/", {}, format="json")
    assert missing.status_code == 400 and "amount_cents" in missing.json()["errors"]
    assert api.post("/api/v1/topups/", {"amount_cents": None}, format="json").status_code == 400
    assert api.post("/api/v1/topups/", {"amount_cents": "1500"}).status_code == 415  # multipart: JSON only
    assert not TopUp.objects.exists()


def test_a_server_without_payments_answers_503_and_stores_nothing(settings, artist):
    settings.STRIPE_SECRET_KEY, settings.PAYMENTS_DEV_PROVIDER = "", False
    response = bearer(artist).post("/api/v1/topups/", {"amount_cents": 1_500}, format="json")
    assert response.status_code == 503 and "not configured" in response.json()["detail"]
    assert not TopUp.objects.exists()


def test_another_artists_topup_is_a_404(dev_payments, artist, outsider):
    topup, _ = services.topup_start(user=artist, amount_cents=1_000)
    eve = bearer(outsider)
    response = eve.get(f"/api/v1/topups/{topup.ref}/")
    assert response.status_code == 404 and response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no such top-up",
    }
    assert eve.get(f"/api/v1/topups/{uuid.uuid4()}/").status_code == 404
    assert eve.get("/api/v1/wallet/").json()["topups"] == []


# --- providers: earnings and payouts ----------------------------------------------------------


def test_a_provider_sees_pending_and_available_earnings_per_frame(earner):
    share = available(earner)
    assert share > 0 and pending(earner) == share
    shown = bearer(earner).get("/api/v1/earnings/").json()
    assert (shown["pending_micro"], shown["available_micro"]) == (share, share)
    assert shown["payouts_ready"] is True and shown["payout_min_micro"] == 1_000 * M
    assert [(f["share_micro"], f["matured"], f["disputed"]) for f in shown["frames"]] == [
        (share, False, False),
        (share, True, False),
    ]
    assert shown["payouts"] == []


def test_a_payout_is_made_once_per_request_key(dev_payments, earner):
    api, before = bearer(earner), available(earner)
    first = api.post("/api/v1/payouts/", {"amount_micro": 1_000 * M, "request_key": "key-00001"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["state"] == Payout.State.SENT and first.json()["amount_cents"] == 1_000  # one token per cent
    again = api.post("/api/v1/payouts/", {"amount_micro": 1_000 * M, "request_key": "key-00001"}, format="json")
    assert again.status_code == 200 and again.json() == first.json()
    bigger = api.post("/api/v1/payouts/", {"amount_micro": 2_000 * M, "request_key": "key-00001"}, format="json")
    assert bigger.status_code == 200 and bigger.json() == first.json()  # the key names the request, not the amount

    assert available(earner) == before - 1_000 * M and Payout.objects.count() == 1
    assert [p["id"] for p in api.get("/api/v1/payouts/").json()] == [first.json()["id"]]
    assert api.get("/api/v1/earnings/").json()["payouts"] == api.get("/api/v1/payouts/").json()
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (-1_000 * M, "must be positive"),
        (0, "must be positive"),
        (1_500.5 * M, "whole number of tokens"),
        (float(1_000 * M), "whole number of tokens"),
        (str(1_000 * M), "whole number of tokens"),
        (True, "whole number of tokens"),
        (1_000 * M + 1, "whole number of cents"),
        (10 * M, "smallest payout"),
        (None, "may not be null"),
    ],
    ids=["negative", "zero", "fraction", "float", "string", "boolean", "part-of-a-cent", "below-min", "null"],
)
def test_a_bad_payout_amount_is_a_400_and_moves_nothing(dev_payments, artist, earner, amount, message):
    before = money_snapshot(artist, earner)
    response = bearer(earner).post(
        "/api/v1/payouts/", {"amount_micro": amount, "request_key": "key-00001"}, format="json"
    )
    assert response.status_code == 400 and message in str(response.json())
    assert money_snapshot(artist, earner) == before and not Payout.objects.exists()


def test_a_payout_above_the_available_balance_is_refused_and_moves_nothing(dev_payments, artist, earner):
    before, too_much = money_snapshot(artist, earner), available(earner) + 100 * M
    response = session(earner).post(
        "/api/v1/payouts/", {"amount_micro": too_much, "request_key": "key-00001"}, format="json"
    )
    assert response.status_code == 400 and "are available" in response.json()["detail"]
    assert money_snapshot(artist, earner) == before and not Payout.objects.exists()


def test_a_payout_needs_a_request_key_and_onboarding(dev_payments, artist, earner):
    api, before = bearer(earner), money_snapshot(artist, earner)
    for body in ({"amount_micro": 1_000 * M}, {"amount_micro": 1_000 * M, "request_key": "short"}):
        response = api.post("/api/v1/payouts/", body, format="json")
        assert response.status_code == 400 and "request_key" in response.json()["errors"]
    ConnectAccount.objects.filter(user=earner).update(onboarded=False)
    response = api.post("/api/v1/payouts/", {"amount_micro": 1_000 * M, "request_key": "key-00001"}, format="json")
    assert response.status_code == 400 and "Finish payout onboarding" in response.json()["detail"]
    assert money_snapshot(artist, earner) == before and not Payout.objects.exists()


def test_a_provider_sees_only_their_own_earnings_and_payouts(dev_payments, earner):
    bearer(earner).post("/api/v1/payouts/", {"amount_micro": 1_000 * M, "request_key": "key-00001"}, format="json")
    other = bearer(user_create(username="hal", password=PASSWORD, role=User.Role.PROVIDER))
    shown = other.get("/api/v1/earnings/").json()
    assert (shown["pending_micro"], shown["available_micro"], shown["frames"], shown["payouts"]) == (0, 0, [], [])
    assert other.get("/api/v1/payouts/").json() == []


# --- who may call what ------------------------------------------------------------------------

ARTIST_CALLS = [
    ("get", "/api/v1/wallet/", None),
    ("post", "/api/v1/topups/", {"amount_cents": 1_500}),
    ("get", f"/api/v1/topups/{uuid.uuid4()}/", None),
]
PROVIDER_CALLS = [
    ("get", "/api/v1/earnings/", None),
    ("get", "/api/v1/payouts/", None),
    ("post", "/api/v1/payouts/", {"amount_micro": 1_000 * M, "request_key": "key-00001"}),
]


def call(client: APIClient, method: str, url: str, body: dict | None):
    return getattr(client, method)(url, body, format="json")


def test_artist_endpoints_refuse_providers_and_admins(dev_payments, provider, admin_user):
    for user in (provider, admin_user):
        for method, url, body in ARTIST_CALLS:
            response = call(bearer(user), method, url, body)
            assert response.status_code == 403 and "artist accounts" in response.json()["detail"], (user, url)
    assert not TopUp.objects.exists()


def test_provider_endpoints_refuse_artists_and_admins(dev_payments, artist, earner, admin_user):
    before = money_snapshot(artist, earner)
    for user in (artist, admin_user):
        for method, url, body in PROVIDER_CALLS:
            response = call(session(user), method, url, body)
            assert response.status_code == 403 and "GPU provider accounts" in response.json()["detail"], (user, url)
    assert money_snapshot(artist, earner) == before and not Payout.objects.exists()


def test_anonymous_and_bad_token_calls_are_401(db):
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer tok00000000.nope")
    for method, url, body in ARTIST_CALLS + PROVIDER_CALLS:
        assert call(APIClient(), method, url, body).status_code == 401, url
        assert call(bad, method, url, body).status_code == 401, url
