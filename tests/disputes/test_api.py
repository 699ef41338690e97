"""The disputes API: artists open and follow disputes of their own frames; admins review and decide them."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.disputes.models import Dispute
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import LedgerTransaction
from marketplace.ledger.services import fee_for
from tests.fixtures.api import bearer, session
from tests.payments.helpers import M, pending, settled_frame, wallet

pytestmark = pytest.mark.django_db
PRICE = 10 * M
REASON = "The lower half of the frame is black."
UPHELD, REJECTED = Dispute.State.UPHELD, Dispute.State.REJECTED


def money_snapshot(*users) -> tuple:
    return (
        LedgerTransaction.objects.count(),
        *(ledger.user_balances(user=u) for u in users),
        *(ledger.user_escrow_total(user=u) for u in users),
    )


@pytest.fixture
def frame(artist, provider) -> Frame:
    return settled_frame(artist=artist, provider=provider, price=PRICE)


@pytest.fixture
def dispute(artist, frame) -> dict:
    response = bearer(artist).post("/api/v1/disputes/", {"frame_id": frame.pk, "reason": REASON}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def decide(client: APIClient, dispute_id: int, decision: str, note: str = "Checked the crops."):
    return client.post(f"/api/v1/disputes/{dispute_id}/decide/", {"decision": decision, "note": note}, format="json")


# --- artists ----------------------------------------------------------------------------------


def test_an_artist_opens_lists_and_follows_a_dispute(artist, frame):
    api = bearer(artist)
    response = api.post("/api/v1/disputes/", {"frame_id": frame.pk, "reason": f"  {REASON}  "}, format="json")
    assert response.status_code == 201, response.content
    opened = response.json()
    assert (opened["state"], opened["frame"], opened["job"], opened["frame_number"]) == (
        Dispute.State.OPEN,
        frame.pk,
        frame.job_id,
        1,
    )
    assert (opened["reason"], opened["amount_micro"], opened["decided_at"]) == (REASON, PRICE, None)
    assert api.get("/api/v1/disputes/").json() == [opened]
    assert session(artist).get(f"/api/v1/disputes/{opened['id']}/").json() == opened


def test_a_provider_sees_the_disputes_of_its_frames_and_nobody_else_does(artist, provider, outsider, dispute):
    against = bearer(provider).get("/api/v1/disputes/against-me/")
    assert against.status_code == 200
    assert [(d["id"], d["state"], d["reason"]) for d in against.json()] == [(dispute["id"], "open", REASON)]
    assert bearer(outsider).get("/api/v1/disputes/against-me/").json() == []
    assert bearer(artist).get("/api/v1/disputes/against-me/").json() == []
    assert bearer(provider).get("/api/v1/disputes/").json() == []  # the list of disputes one opened


OWN_FRAME = "the artist's settled frame"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": REASON}, "frame_id"),
        ({"frame_id": "first", "reason": REASON}, "frame_id"),
        ({"frame_id": True, "reason": REASON}, "frame_id"),
        ({"frame_id": OWN_FRAME}, "reason"),
        ({"frame_id": OWN_FRAME, "reason": "   black   "}, "reason"),
        ({"frame_id": OWN_FRAME, "reason": "x" * 2001}, "reason"),
    ],
    ids=["no-frame", "frame-as-text", "frame-as-boolean", "no-reason", "reason-too-short", "reason-too-long"],
)
def test_bad_input_is_a_400_naming_the_field_and_opens_nothing(artist, frame, body, field):
    body = {key: frame.pk if value == OWN_FRAME else value for key, value in body.items()}
    response = bearer(artist).post("/api/v1/disputes/", body, format="json")
    assert response.status_code == 400 and field in response.json()["errors"]
    assert not Dispute.objects.exists()


def test_another_artists_frame_and_dispute_are_404(outsider, provider, frame, dispute):
    eve = bearer(outsider)
    for frame_id in (frame.pk, frame.pk + 1_000):
        response = eve.post("/api/v1/disputes/", {"frame_id": frame_id, "reason": REASON}, format="json")
        assert response.status_code == 404 and response.json() == {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "no such frame",
        }
    assert eve.get(f"/api/v1/disputes/{dispute['id']}/").status_code == 404
    assert eve.get("/api/v1/disputes/").json() == []
    # The provider who rendered it is not its artist either.
    assert bearer(provider).get(f"/api/v1/disputes/{dispute['id']}/").status_code == 404
    assert Dispute.objects.count() == 1


def test_a_dispute_after_the_window_is_a_409_with_the_reason(artist, provider):
    old = settled_frame(artist=artist, provider=provider, settled_at=timezone.now() - timedelta(hours=72, seconds=1))
    response = bearer(artist).post("/api/v1/disputes/", {"frame_id": old.pk, "reason": REASON}, format="json")
    assert response.status_code == 409 and "dispute window for this frame closed" in response.json()["detail"]
    assert not Dispute.objects.exists()


def test_a_second_dispute_of_the_same_frame_is_a_409(artist, frame, dispute):
    response = bearer(artist).post("/api/v1/disputes/", {"frame_id": frame.pk, "reason": REASON}, format="json")
    assert response.status_code == 409 and "already disputed" in response.json()["detail"]
    assert Dispute.objects.count() == 1


def test_a_frame_that_is_not_settled_cannot_be_disputed(artist, frame):
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.VERIFYING)
    response = bearer(artist).post("/api/v1/disputes/", {"frame_id": frame.pk, "reason": REASON}, format="json")
    assert response.status_code == 409 and "Only a finished frame" in response.json()["detail"]
    assert not Dispute.objects.exists()


# --- admins -----------------------------------------------------------------------------------


def test_the_review_queue_shows_open_disputes_to_admins(admin_user, artist, provider, frame, dispute):
    queue = bearer(admin_user).get("/api/v1/disputes/review/")
    assert queue.status_code == 200
    (item,) = queue.json()
    assert item["dispute"] == dispute
    assert (item["artist"], item["provider"], item["node"], item["decided_by"]) == (
        artist.username,
        provider.username,
        frame.node.name,
        None,
    )


def test_upholding_refunds_the_artist_and_a_repeat_changes_nothing(admin_user, artist, provider, dispute):
    api = bearer(admin_user)
    assert pending(provider) == PRICE - fee_for(PRICE)
    first = decide(api, dispute["id"], UPHELD)
    assert first.status_code == 200, first.content
    body = first.json()
    assert (body["dispute"]["state"], body["dispute"]["decision_note"], body["decided_by"]) == (
        UPHELD,
        "Checked the crops.",
        admin_user.username,
    )
    # The pay went back to the artist, whose job holds the price again to render the frame elsewhere.
    assert (pending(provider), wallet(artist), ledger.user_escrow_total(user=artist)) == (0, 0, PRICE)
    after = money_snapshot(artist, provider)

    assert decide(api, dispute["id"], UPHELD).json() == body
    conflicting = decide(api, dispute["id"], REJECTED)
    assert conflicting.status_code == 409 and "already upheld" in conflicting.json()["detail"]
    assert money_snapshot(artist, provider) == after
    assert Dispute.objects.get().state == UPHELD and bearer(admin_user).get("/api/v1/disputes/review/").json() == []
    assert bearer(artist).get(f"/api/v1/disputes/{dispute['id']}/").json()["state"] == UPHELD


def test_rejecting_leaves_the_pay_with_the_provider(admin_user, artist, provider, dispute):
    before = money_snapshot(artist, provider)
    response = decide(session(admin_user), dispute["id"], REJECTED)
    assert response.status_code == 200 and response.json()["dispute"]["state"] == REJECTED
    assert money_snapshot(artist, provider) == before and pending(provider) == PRICE - fee_for(PRICE)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "maybe", "note": "Checked."}, "decision"),
        ({"decision": "open", "note": "Checked."}, "decision"),
        ({"note": "Checked."}, "decision"),
        ({"decision": UPHELD}, "note"),
        ({"decision": UPHELD, "note": "  "}, "note"),
    ],
    ids=["unknown", "open", "no-decision", "no-note", "blank-note"],
)
def test_a_bad_decision_is_a_400_and_decides_nothing(admin_user, artist, provider, dispute, body, field):
    before = money_snapshot(artist, provider)
    response = bearer(admin_user).post(f"/api/v1/disputes/{dispute['id']}/decide/", body, format="json")
    assert response.status_code == 400 and field in response.json()["errors"]
    assert Dispute.objects.get().state == Dispute.State.OPEN and money_snapshot(artist, provider) == before


def test_deciding_an_unknown_dispute_is_a_404(admin_user, dispute):
    response = decide(bearer(admin_user), dispute["id"] + 1, UPHELD)
    assert response.status_code == 404 and response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no such dispute",
    }


def test_only_admins_review_and_decide(artist, provider, outsider, dispute):
    before = money_snapshot(artist, provider)
    for user in (artist, provider, outsider):
        for client in (bearer(user), session(user)):
            queue = client.get("/api/v1/disputes/review/")
            assert queue.status_code == 403 and "for admins" in queue.json()["detail"]
            assert decide(client, dispute["id"], UPHELD).status_code == 403
    assert Dispute.objects.get().state == Dispute.State.OPEN and money_snapshot(artist, provider) == before


def test_anonymous_and_bad_token_calls_are_401(dispute):
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer tok00000000.nope")
    for client in (APIClient(), bad):
        assert client.get("/api/v1/disputes/").status_code == 401
        assert (
            client.post(
                "/api/v1/disputes/", {"frame_id": dispute["frame"], "reason": REASON}, format="json"
            ).status_code
            == 401
        )
        assert client.get(f"/api/v1/disputes/{dispute['id']}/").status_code == 401
        assert client.get("/api/v1/disputes/review/").status_code == 401
        assert decide(client, dispute["id"], UPHELD).status_code == 401
    assert Dispute.objects.get().state == Dispute.State.OPEN


def test_the_schema_documents_the_payment_and_dispute_endpoints(artist):
    schema = session(artist).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in (
        "/api/v1/wallet/",
        "/api/v1/topups/",
        "/api/v1/topups/{ref}/",
        "/api/v1/earnings/",
        "/api/v1/payouts/",
        "/api/v1/disputes/",
        "/api/v1/disputes/{dispute_id}/",
        "/api/v1/disputes/review/",
        "/api/v1/disputes/{dispute_id}/decide/",
    ):
        assert path in schema["paths"], path
    enums = schema["components"]["schemas"]
    assert {"TopUpStateEnum", "PayoutStateEnum", "DisputeStateEnum"} <= set(enums)
    assert enums["PayoutRequest"]["properties"]["amount_micro"]["type"] == "integer"
