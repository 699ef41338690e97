"""Payout races between real concurrent connections (Postgres)."""

import uuid

import pytest

from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account
from marketplace.payments.models import ConnectAccount, Payout
from marketplace.payments.payouts import PayoutRefused, payout_request
from tests.fixtures.race import race
from tests.payments.helpers import M, available, balance
from tests.payments.test_payouts import give_available

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("dev_payments")]
CLICKS = 8


@pytest.fixture
def earner(provider):
    ConnectAccount.objects.create(user=provider, stripe_account_id="dev_acct", onboarded=True)
    give_available(provider, 5_000 * M)
    return provider


def test_eight_concurrent_clicks_of_one_form_make_one_payout(earner):
    request_key = uuid.uuid4().hex
    results = race(lambda i: payout_request(user=earner, amount_micro=2_000 * M, request_key=request_key), CLICKS)
    assert all(isinstance(r, Payout) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert Payout.objects.count() == 1 and Payout.objects.get().state == Payout.State.SENT
    assert available(earner) == 3_000 * M
    assert balance(Account.Kind.PAYOUT_CLEARING) == 2_000 * M
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_concurrent_payouts_from_different_tabs_never_overdraw(earner):
    results = race(lambda i: payout_request(user=earner, amount_micro=3_000 * M, request_key=uuid.uuid4().hex), CLICKS)
    paid = [r for r in results if isinstance(r, Payout)]
    refused = [r for r in results if isinstance(r, PayoutRefused)]
    assert len(paid) == 1 and len(refused) == CLICKS - 1, results
    assert available(earner) == 2_000 * M
    assert Account.objects.filter(balance__lt=0).exclude(kind=Account.Kind.PAYMENT_CLEARING).count() == 0
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []
