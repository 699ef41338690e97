"""Starting top-ups: Stripe Checkout (intercepted at the HTTP layer) and the simulated provider."""

from urllib.parse import parse_qs

import pytest

from marketplace.payments import providers
from marketplace.payments.models import TopUp
from marketplace.payments.services import TopUpRefused, topup_start
from tests.payments.helpers import M, wallet

pytestmark = pytest.mark.django_db
SESSIONS_URL = "https://api.stripe.com/v1/checkout/sessions"


def form_params(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body).items()}


def stripe_session(http, session_id: str = "cs_test_123"):
    http.post(
        SESSIONS_URL,
        json={"id": session_id, "object": "checkout.session", "url": f"https://checkout.stripe.com/c/pay/{session_id}"},
    )


def test_a_checkout_session_carries_the_reference_the_amount_and_an_idempotency_key(stripe_on, http, artist):
    stripe_session(http)
    topup, url = topup_start(user=artist, amount_cents=1_250)

    assert url == "https://checkout.stripe.com/c/pay/cs_test_123"
    assert topup.session_id == "cs_test_123" and topup.provider == "stripe"
    assert topup.tokens_micro == 1_250 * M  # 100 tokens per dollar: one per cent
    (call,) = http.calls
    assert call.request.headers["Idempotency-Key"] == f"checkout-{topup.ref}"
    assert call.request.headers["Authorization"] == "Bearer sk_test_fake"
    params = form_params(call.request)
    assert params["mode"] == "payment"
    assert params["client_reference_id"] == str(artist.pk)
    assert params["line_items[0][price_data][unit_amount]"] == "1250"
    assert params["line_items[0][price_data][currency]"] == "usd"
    assert params["metadata[topup_ref]"] == str(topup.ref)
    assert params["payment_intent_data[metadata][topup_ref]"] == str(topup.ref)
    assert params["success_url"].endswith(f"/payments/topup/{topup.ref}/")


def test_the_wallet_form_redirects_to_stripe_checkout(stripe_on, http, client, artist):
    stripe_session(http)
    client.force_login(artist)
    response = client.post("/payments/topup/", {"amount": "12.50"})
    assert response.status_code == 302
    assert response["Location"] == "https://checkout.stripe.com/c/pay/cs_test_123"
    assert TopUp.objects.get().amount_cents == 1_250


@pytest.mark.parametrize("amount", ["1.234", "-5", "abc", ""])
def test_the_wallet_form_refuses_malformed_amounts_without_calling_stripe(stripe_on, http, client, artist, amount):
    client.force_login(artist)
    response = client.post("/payments/topup/", {"amount": amount}, follow=True)
    assert response.status_code == 200
    assert list(response.context["messages"])
    assert not TopUp.objects.exists() and not http.calls


@pytest.mark.parametrize("cents", [499, 100_001, 0, -100])
def test_it_refuses_amounts_out_of_bounds(stripe_on, http, artist, cents):
    with pytest.raises(TopUpRefused, match=r"between 5\.00 USD and 1,000\.00 USD"):
        topup_start(user=artist, amount_cents=cents)
    assert not TopUp.objects.exists() and not http.calls


def test_it_refuses_fractional_cents(stripe_on, http, artist):
    with pytest.raises(TopUpRefused, match="whole number of cents"):
        topup_start(user=artist, amount_cents=1000.5)
    assert not TopUp.objects.exists()


def test_only_artists_buy_tokens(stripe_on, http, provider):
    with pytest.raises(TopUpRefused, match="Only artist"):
        topup_start(user=provider, amount_cents=1_000)
    assert not TopUp.objects.exists()


def test_a_stripe_refusal_is_a_clear_error(stripe_on, http, artist):
    http.post(SESSIONS_URL, status=400, json={"error": {"type": "invalid_request_error", "message": "Bad currency"}})
    with pytest.raises(TopUpRefused, match="Bad currency"):
        topup_start(user=artist, amount_cents=1_000)
    assert TopUp.objects.get().session_id is None  # a pending row no event can complete
    assert wallet(artist) == 0


def test_the_dev_provider_is_never_active_when_a_stripe_key_is_set(stripe_on, client, artist):
    assert isinstance(providers.provider_get(), providers.StripeProvider)
    assert not providers.dev_provider_active()
    # Even a simulated top-up left from before the key was set cannot be completed.
    topup = TopUp.objects.create(
        user=artist, amount_cents=1_000, currency="usd", tokens_micro=1_000 * M, provider="dev", session_id="dev_cs_x"
    )
    client.force_login(artist)
    assert client.get(f"/payments/dev/checkout/{topup.ref}/").status_code == 404
    assert client.post(f"/payments/dev/checkout/{topup.ref}/").status_code == 404
    assert wallet(artist) == 0


def test_without_stripe_keys_and_without_the_dev_flag_there_is_no_provider(settings, client, artist):
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_DEV_PROVIDER = False
    with pytest.raises(providers.PaymentsUnavailable):
        providers.provider_get()
    client.force_login(artist)
    response = client.post("/payments/topup/", {"amount": "10"}, follow=True)
    assert "not configured" in str(next(iter(response.context["messages"])))
    assert not TopUp.objects.exists()


def test_the_simulated_checkout_is_labelled_and_credits_through_the_webhook_service(dev_payments, client, artist):
    client.force_login(artist)
    response = client.post("/payments/topup/", {"amount": "20"})
    topup = TopUp.objects.get()
    assert response["Location"] == f"/payments/dev/checkout/{topup.ref}/"
    page = client.get(response["Location"])
    assert "SIMULATED PAYMENT — no real money" in page.content.decode()
    client.post(response["Location"])
    client.post(response["Location"])  # a second click credits nothing more
    assert wallet(artist) == 2_000 * M
    topup.refresh_from_db()
    assert topup.state == TopUp.State.COMPLETED


def test_another_users_top_up_pages_are_404(dev_payments, client, artist, outsider):
    client.force_login(artist)
    client.post("/payments/topup/", {"amount": "20"})
    topup = TopUp.objects.get()
    client.force_login(outsider)
    assert client.get(f"/payments/dev/checkout/{topup.ref}/").status_code == 404
    assert client.post(f"/payments/dev/checkout/{topup.ref}/").status_code == 404
    assert client.get(f"/payments/topup/{topup.ref}/").status_code == 404
    assert wallet(artist) == 0 and wallet(outsider) == 0


def test_the_conversion_rate_is_a_setting(dev_payments, settings, artist):
    settings.PAYMENTS_TOKENS_PER_USD = 1_000
    topup, _ = topup_start(user=artist, amount_cents=1_000)
    assert topup.tokens_micro == 10_000 * M
