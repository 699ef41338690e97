import pytest

from tests.payments.helpers import WEBHOOK_SECRET


@pytest.fixture
def stripe_on(settings):
    """Stripe configured with test keys; outbound calls must be intercepted (the `responses` fixture)."""
    settings.STRIPE_SECRET_KEY = "sk_test_fake"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.PAYMENTS_DEV_PROVIDER = True  # must still lose to the Stripe key
    return settings


@pytest.fixture
def dev_payments(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.PAYMENTS_DEV_PROVIDER = True
    return settings


@pytest.fixture
def http():
    """Every outbound HTTP request must match a registered response; anything else fails (no network)."""
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
