"""The Stripe webhook: signed with Stripe's scheme and a test secret, processed once per event id."""

import json
import time

import pytest

from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.services import hold_escrow
from marketplace.payments import selectors
from marketplace.payments.models import TopUp, WebhookEvent
from marketplace.payments.services import webhook_event_process
from tests.fixtures.race import race
from tests.payments.helpers import (
    WEBHOOK_URL,
    M,
    balance,
    charge_dispute,
    charge_dispute_closed,
    charge_dispute_created,
    charge_dispute_funds_reinstated,
    charge_dispute_funds_withdrawn,
    charge_refunded,
    post_event,
    session_completed,
    stripe_event,
    stripe_signature,
    wallet,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_on")]


@pytest.fixture
def topup(artist) -> TopUp:
    # $10.00 at the default rate of 100 tokens per dollar
    return TopUp.objects.create(
        user=artist,
        amount_cents=1_000,
        currency="usd",
        tokens_micro=1_000 * M,
        provider="stripe",
        session_id="cs_test_1",
    )


def test_a_signed_completion_credits_the_wallet_once_and_a_replay_changes_nothing(client, artist, topup):
    event = session_completed(topup)
    first = post_event(client, event)
    assert first.status_code == 200, first.content
    assert wallet(artist) == 1_000 * M
    topup.refresh_from_db()
    assert topup.state == TopUp.State.COMPLETED and topup.credited_micro == 1_000 * M
    assert topup.payment_intent == "pi_test_1"

    replay = post_event(client, event)
    assert replay.status_code == 200
    assert replay.json()["outcome"].startswith("replay")
    assert wallet(artist) == 1_000 * M
    assert WebhookEvent.objects.filter(event_id=event["id"]).count() == 1
    assert LedgerTransaction.objects.filter(idempotency_key="topup:cs_test_1").count() == 1
    assert ledger.ledger_total() == 0


def test_a_second_event_for_the_same_payment_does_not_credit_twice(client, artist, topup):
    post_event(client, session_completed(topup))
    again = stripe_event("checkout.session.async_payment_succeeded", session_completed(topup)["data"]["object"])
    response = post_event(client, again)
    assert response.status_code == 200
    assert response.json()["outcome"] == "already credited"
    assert wallet(artist) == 1_000 * M


def test_it_refuses_a_bad_signature_and_stores_nothing(client, artist, topup):
    response = post_event(client, session_completed(topup), secret="whsec_someone_else")
    assert response.status_code == 400
    assert "invalid Stripe signature" in response.json()["error"]
    assert not WebhookEvent.objects.exists()
    assert wallet(artist) == 0


def test_it_refuses_a_tampered_payload(client, artist, topup):
    payload = json.dumps(session_completed(topup))
    signature = stripe_signature(payload)
    response = client.post(
        WEBHOOK_URL,
        data=payload.replace('"amount_total": 1000', '"amount_total": 1'),
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_it_refuses_a_stale_timestamp(client, artist, topup):
    response = post_event(client, session_completed(topup), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert "tolerance" in response.json()["error"]
    assert not WebhookEvent.objects.exists()
    assert wallet(artist) == 0


def test_it_refuses_a_request_without_a_signature(client, topup):
    response = client.post(WEBHOOK_URL, data=json.dumps(session_completed(topup)), content_type="application/json")
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_it_refuses_a_signed_payload_that_is_not_json(client):
    response = client.post(
        WEBHOOK_URL,
        data="not json",
        content_type="application/json",
        headers={"Stripe-Signature": stripe_signature("not json")},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "the payload is not valid JSON"


def test_it_refuses_every_webhook_when_no_secret_is_configured(client, settings, topup):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = post_event(client, session_completed(topup))
    assert response.status_code == 400
    assert "not configured" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_an_unknown_event_type_is_recorded_and_ignored(client, artist):
    event = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    response = post_event(client, event)
    assert response.status_code == 200
    recorded = WebhookEvent.objects.get(event_id=event["id"])
    assert recorded.outcome.startswith("ignored") and recorded.processed_at is not None
    assert ledger.ledger_total() == 0 and not LedgerTransaction.objects.exists()


def test_a_refund_before_the_completion_is_never_credited(client, artist, topup):
    assert post_event(client, charge_refunded(topup, amount_refunded=1_000)).status_code == 200
    assert post_event(client, session_completed(topup)).status_code == 200
    topup.refresh_from_db()
    assert topup.state == TopUp.State.REFUNDED
    assert topup.credited_micro == 0 and topup.clawed_back_micro == 1_000 * M and topup.unrecovered_micro == 0
    assert wallet(artist) == 0
    assert not LedgerTransaction.objects.exists()


def test_a_partial_refund_before_the_completion_withholds_only_its_share(client, artist, topup):
    post_event(client, charge_refunded(topup, amount_refunded=250))
    post_event(client, session_completed(topup))
    assert wallet(artist) == 750 * M


def test_a_refund_after_the_completion_debits_the_wallet_back(client, artist, topup):
    post_event(client, session_completed(topup))
    response = post_event(client, charge_refunded(topup, amount_refunded=1_000))
    assert response.json()["outcome"] == f"debited {1_000 * M} micro-tokens"
    assert wallet(artist) == 0
    assert LedgerTransaction.objects.filter(idempotency_key="topup:cs_test_1:reversal:1").exists()
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_partial_refunds_are_cumulative(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_refunded(topup, amount_refunded=300))
    post_event(client, charge_refunded(topup, amount_refunded=500))
    assert wallet(artist) == 500 * M


def test_a_refund_of_spent_tokens_takes_what_is_left_and_flags_the_account(client, artist, topup):
    post_event(client, session_completed(topup))
    hold_escrow(artist=artist, job_ref="job:1", amount=800 * M, key="hold:test")
    response = post_event(client, charge_refunded(topup, amount_refunded=1_000))
    assert response.status_code == 200
    assert "unrecovered" in response.json()["outcome"]
    assert wallet(artist) == 0  # never negative
    topup.refresh_from_db()
    assert topup.unrecovered_micro == 800 * M
    assert selectors.wallet_frozen(user=artist)
    assert ledger.ledger_total() == 0
    client.force_login(artist)
    page = client.get("/payments/wallet/")
    assert b"account is frozen" in page.content


def test_a_card_dispute_is_matched_by_payment_intent_and_debits_the_wallet(client, artist, topup):
    post_event(client, session_completed(topup, payment_intent="pi_disputed"))
    response = post_event(client, charge_dispute_created(amount=1_000, payment_intent="pi_disputed"))
    assert response.status_code == 200
    topup.refresh_from_db()
    assert topup.state == TopUp.State.DISPUTED
    assert wallet(artist) == 0


def test_a_dispute_of_an_unknown_payment_is_recorded_for_manual_reconciliation(client, artist):
    event = charge_dispute_created(amount=1_000, payment_intent="pi_unknown")
    response = post_event(client, event)
    assert response.status_code == 200
    assert WebhookEvent.objects.get(event_id=event["id"]).outcome.startswith("unmatched")
    assert not LedgerTransaction.objects.exists()


def test_a_completion_for_a_different_amount_is_not_credited(client, artist, topup):
    response = post_event(client, session_completed(topup, amount=1))
    assert "does not match" in response.json()["outcome"]
    assert wallet(artist) == 0
    topup.refresh_from_db()
    assert topup.state == TopUp.State.PENDING


def test_an_unpaid_completion_waits_for_the_async_payment(client, artist, topup):
    event = session_completed(topup)
    event["data"]["object"]["payment_status"] = "unpaid"
    post_event(client, event)
    assert wallet(artist) == 0
    paid = stripe_event("checkout.session.async_payment_succeeded", session_completed(topup)["data"]["object"])
    post_event(client, paid)
    assert wallet(artist) == 1_000 * M


# --- card disputes: won, lost, inquiries, any order -------------------------------------------


def outcome_of(client, event) -> str:
    response = post_event(client, event)
    assert response.status_code == 200, response.content
    return response.json()["outcome"]


def ledger_keys() -> list[str]:
    return list(LedgerTransaction.objects.order_by("pk").values_list("idempotency_key", flat=True))


def test_a_won_dispute_gives_the_tokens_back_and_the_ledger_balances(client, artist, topup):
    post_event(client, session_completed(topup))
    assert outcome_of(client, charge_dispute_created(amount=1_000)) == f"debited {1_000 * M} micro-tokens"
    assert wallet(artist) == 0

    assert (
        outcome_of(client, charge_dispute_closed(amount=1_000, status="won"))
        == f"credited {1_000 * M} micro-tokens back"
    )
    assert wallet(artist) == 1_000 * M
    assert balance(Account.Kind.PAYMENT_CLEARING) == -1_000 * M
    topup.refresh_from_db()
    assert topup.state == TopUp.State.COMPLETED and topup.dispute_status == TopUp.DisputeStatus.WON
    assert topup.dispute_id == "dp_test_1" and topup.disputed_cents == 1_000
    assert topup.reversed_cents == 0 and topup.clawed_back_micro == 0 and topup.unrecovered_micro == 0
    assert ledger_keys() == ["topup:cs_test_1", "topup:cs_test_1:reversal:1", "topup:cs_test_1:reinstatement:2"]
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_lost_dispute_moves_nothing_more(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_dispute_created(amount=1_000))
    assert outcome_of(client, charge_dispute_closed(amount=1_000, status="lost")) == "no change"
    # Stripe's reinstatement of a lost dispute's overlap with a refund is not a win.
    assert outcome_of(client, charge_dispute_funds_reinstated(amount=1_000, status="lost")).startswith("no change")
    assert wallet(artist) == 0
    topup.refresh_from_db()
    assert topup.state == TopUp.State.DISPUTED and topup.dispute_status == TopUp.DisputeStatus.LOST
    assert topup.reversed_cents == 1_000 and topup.clawed_back_micro == 1_000 * M
    assert ledger_keys() == ["topup:cs_test_1", "topup:cs_test_1:reversal:1"]
    assert ledger.ledger_total() == 0


def test_a_lost_dispute_reported_before_it_opened_debits_once(client, artist, topup):
    post_event(client, session_completed(topup))
    assert outcome_of(client, charge_dispute_closed(amount=1_000, status="lost")) == f"debited {1_000 * M} micro-tokens"
    assert outcome_of(client, charge_dispute_created(amount=1_000)).startswith("no change")
    assert wallet(artist) == 0
    assert ledger_keys() == ["topup:cs_test_1", "topup:cs_test_1:reversal:1"]


def test_a_won_dispute_of_spent_tokens_pays_off_the_debt_before_crediting(client, artist, topup):
    post_event(client, session_completed(topup))
    hold_escrow(artist=artist, job_ref="job:1", amount=800 * M, key="hold:test")
    post_event(client, charge_dispute_created(amount=1_000))
    topup.refresh_from_db()
    assert wallet(artist) == 0 and topup.unrecovered_micro == 800 * M
    assert selectors.wallet_frozen(user=artist)

    outcome = outcome_of(client, charge_dispute_closed(amount=1_000, status="won"))
    assert outcome == f"credited {200 * M} micro-tokens back, {800 * M} unrecovered written off"
    assert wallet(artist) == 200 * M  # what was really debited, nothing more
    topup.refresh_from_db()
    assert topup.unrecovered_micro == 0 and topup.clawed_back_micro == 0
    assert not selectors.wallet_frozen(user=artist)
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_won_dispute_of_a_partly_spent_wallet_leaves_the_refund_debt(client, artist):
    topup = TopUp.objects.create(
        user=artist,
        amount_cents=2_000,
        currency="usd",
        tokens_micro=2_000 * M,
        provider="stripe",
        session_id="cs_test_2",
    )
    post_event(client, session_completed(topup))
    hold_escrow(artist=artist, job_ref="job:1", amount=2_000 * M, key="hold:test")
    post_event(client, charge_refunded(topup, amount_refunded=500))
    post_event(client, charge_dispute_created(amount=1_500))
    topup.refresh_from_db()
    assert topup.unrecovered_micro == 2_000 * M

    post_event(client, charge_dispute_closed(amount=1_500, status="won"))
    topup.refresh_from_db()
    assert topup.unrecovered_micro == 500 * M and topup.state == TopUp.State.REFUNDED
    assert wallet(artist) == 0 and selectors.wallet_debt_micro(user=artist) == 500 * M
    assert ledger_keys() == ["topup:cs_test_2", "hold:test"]  # nothing could be debited, nothing is credited


def test_a_win_delivered_before_the_dispute_opened_never_debits(client, artist, topup):
    post_event(client, session_completed(topup))
    assert outcome_of(client, charge_dispute_closed(amount=1_000, status="won")) == "no change"
    assert outcome_of(client, charge_dispute_created(amount=1_000)) == "no change: dispute dp_test_1 is already won"
    assert outcome_of(client, charge_dispute_funds_withdrawn(amount=1_000)).startswith("no change")
    assert wallet(artist) == 1_000 * M
    assert ledger_keys() == ["topup:cs_test_1"]
    topup.refresh_from_db()
    assert topup.state == TopUp.State.COMPLETED and topup.clawed_back_micro == 0


def test_funds_reinstated_and_closed_won_credit_once(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_dispute_created(amount=1_000))
    reinstated = outcome_of(client, charge_dispute_funds_reinstated(amount=1_000))
    assert reinstated == f"credited {1_000 * M} micro-tokens back"
    assert outcome_of(client, charge_dispute_closed(amount=1_000, status="won")).startswith("no change")
    assert wallet(artist) == 1_000 * M
    assert LedgerTransaction.objects.filter(idempotency_key__contains=":reinstatement:").count() == 1


def test_dispute_created_replayed_after_the_win_debits_nothing(client, artist, topup):
    post_event(client, session_completed(topup))
    created = charge_dispute_created(amount=1_000)
    post_event(client, created)
    post_event(client, charge_dispute_closed(amount=1_000, status="won"))

    assert outcome_of(client, created).startswith("replay")  # same event id
    assert outcome_of(client, charge_dispute_created(amount=1_000)).startswith("no change")  # a new id
    assert outcome_of(client, charge_dispute_funds_withdrawn(amount=1_000)).startswith("no change")
    assert wallet(artist) == 1_000 * M
    assert len(ledger_keys()) == 3 and ledger.ledger_total() == 0


def test_a_partial_refund_and_a_dispute_of_the_rest_are_both_reversed(client, artist):
    topup = TopUp.objects.create(
        user=artist,
        amount_cents=2_000,
        currency="usd",
        tokens_micro=2_000 * M,
        provider="stripe",
        session_id="cs_test_2",
    )
    post_event(client, session_completed(topup))
    post_event(client, charge_refunded(topup, amount_refunded=500))
    assert wallet(artist) == 1_500 * M
    post_event(client, charge_dispute_created(amount=1_500))
    assert wallet(artist) == 0
    topup.refresh_from_db()
    assert (topup.refunded_cents, topup.disputed_cents, topup.reversed_cents) == (500, 1_500, 2_000)
    assert topup.state == TopUp.State.DISPUTED

    post_event(client, charge_dispute_closed(amount=1_500, status="won"))
    assert wallet(artist) == 1_500 * M  # the refund stays taken back
    topup.refresh_from_db()
    assert topup.reversed_cents == 500 and topup.state == TopUp.State.REFUNDED
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_a_dispute_of_the_whole_amount_after_a_partial_refund_reverses_the_amount_once(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_refunded(topup, amount_refunded=400))
    post_event(client, charge_dispute_created(amount=1_000))
    topup.refresh_from_db()
    assert topup.reversed_cents == 1_000 and topup.clawed_back_micro == 1_000 * M
    assert wallet(artist) == 0


def test_a_refund_after_a_won_dispute_uses_a_fresh_ledger_key_and_really_debits(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_dispute_created(amount=1_000))
    post_event(client, charge_dispute_closed(amount=1_000, status="won"))
    assert outcome_of(client, charge_refunded(topup, amount_refunded=1_000)) == f"debited {1_000 * M} micro-tokens"
    assert wallet(artist) == 0
    assert ledger_keys()[1:] == [
        "topup:cs_test_1:reversal:1",
        "topup:cs_test_1:reinstatement:2",
        "topup:cs_test_1:reversal:3",
    ]
    topup.refresh_from_db()
    assert topup.state == TopUp.State.REFUNDED and topup.ledger_adjustments == 3
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_an_inquiry_takes_nothing_and_closing_it_changes_nothing(client, artist, topup):
    post_event(client, session_completed(topup))
    assert outcome_of(client, charge_dispute_created(amount=1_000, status="warning_needs_response")) == "no change"
    assert outcome_of(client, charge_dispute_closed(amount=1_000, status="warning_closed")) == "no change"
    assert wallet(artist) == 1_000 * M
    assert ledger_keys() == ["topup:cs_test_1"]
    topup.refresh_from_db()
    assert topup.state == TopUp.State.COMPLETED and topup.dispute_status == TopUp.DisputeStatus.WARNING_CLOSED


def test_an_inquiry_that_escalates_takes_the_tokens_when_the_funds_are_withdrawn(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_dispute_created(amount=1_000, status="warning_needs_response"))
    assert outcome_of(client, charge_dispute_funds_withdrawn(amount=1_000)) == f"debited {1_000 * M} micro-tokens"
    assert wallet(artist) == 0
    topup.refresh_from_db()
    assert topup.state == TopUp.State.DISPUTED


def test_an_event_about_a_second_dispute_is_left_for_manual_reconciliation(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_dispute_created(amount=1_000))
    other = charge_dispute("charge.dispute.closed", amount=1_000, status="won", dispute_id="dp_other")
    assert "needs manual reconciliation" in outcome_of(client, other)
    assert wallet(artist) == 0
    topup.refresh_from_db()
    assert topup.dispute_id == "dp_test_1" and topup.dispute_status == TopUp.DisputeStatus.NEEDS_RESPONSE


def test_a_dispute_without_a_status_changes_nothing(client, artist, topup):
    post_event(client, session_completed(topup))
    event = charge_dispute_created(amount=1_000)
    del event["data"]["object"]["status"]
    assert outcome_of(client, event).startswith("not applied")
    assert wallet(artist) == 1_000 * M
    topup.refresh_from_db()
    assert topup.dispute_id == "" and topup.state == TopUp.State.COMPLETED


def test_the_wallet_lists_the_dispute_of_a_top_up(client, artist, topup):
    post_event(client, session_completed(topup))
    post_event(client, charge_dispute_created(amount=1_000))
    post_event(client, charge_dispute_closed(amount=1_000, status="won"))
    client.force_login(artist)
    page = client.get("/payments/wallet/").content.decode()
    assert "Completed</a> (card dispute won, tokens reinstated)" in page


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_closing_events_of_a_won_dispute_credit_once(artist, topup, stripe_on):
    webhook_event_process(event=session_completed(topup))
    webhook_event_process(event=charge_dispute_created(amount=1_000))
    closing = [charge_dispute_closed(amount=1_000, status="won"), charge_dispute_funds_reinstated(amount=1_000)] * 3
    results = race(lambda i: webhook_event_process(event=closing[i]), len(closing))
    assert sum(str(r).startswith("credited") for r in results) == 1, results
    assert all(isinstance(r, str) for r in results), results
    assert wallet(artist) == 1_000 * M
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_the_log_lines_carry_the_event_and_the_top_up_as_fields(artist, topup, json_log):
    paid = session_completed(topup)
    webhook_event_process(event=paid)
    short = session_completed(topup, amount=999)
    short["data"]["object"]["id"] = "cs_test_2"  # another checkout session than the top-up's
    webhook_event_process(event=short)
    assert [(line["stripe_event_id"], line["outcome"]) for line in json_log.of("stripe_event")] == [
        (paid["id"], "credited 1000000000 micro-tokens"),
        (short["id"], "already credited"),
    ]
    topup.completed_at = None
    topup.save()
    webhook_event_process(event=stripe_event("checkout.session.completed", short["data"]["object"]))
    mismatch = json_log.one("topup_session_mismatch")
    assert (
        mismatch.items()
        >= {
            "topup_ref": str(topup.ref),
            "session_id": "cs_test_2",
            "expected_session_id": "cs_test_1",
            "detail": "the top-up was completed by another checkout session",
        }.items()
    )
