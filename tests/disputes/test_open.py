"""Artists dispute settled frames of their own jobs, within the window, once per delivery."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.disputes.models import AuditLog, Dispute
from marketplace.disputes.services import DisputeNotFound, DisputeRefused, dispute_open
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.payments.earnings import earnings_mature
from tests.payments.helpers import M, settled_frame

pytestmark = pytest.mark.django_db
REASON = "The render is black in the lower half."


@pytest.fixture
def frame(artist, provider) -> Frame:
    return settled_frame(artist=artist, provider=provider, price=10 * M, result_key="results/f.png")


def test_an_artist_disputes_a_settled_frame_of_their_job(artist, provider, frame):
    dispute = dispute_open(artist=artist, frame_id=frame.pk, reason=f"  {REASON}  ")
    assert dispute.state == Dispute.State.OPEN
    assert dispute.reason == REASON
    assert (dispute.provider, dispute.node_id, dispute.amount_micro) == (provider, frame.node_id, 10 * M)
    assert dispute.result_key == "results/f.png" and dispute.frame_settled_at == frame.settled_at
    entry = AuditLog.objects.get()
    assert (entry.actor, entry.action, entry.object_id) == (artist, "dispute.opened", str(dispute.pk))


def test_it_refuses_after_the_window(artist, provider):
    old = settled_frame(artist=artist, provider=provider, settled_at=timezone.now() - timedelta(hours=72, seconds=1))
    with pytest.raises(DisputeRefused, match="dispute window for this frame closed"):
        dispute_open(artist=artist, frame_id=old.pk, reason=REASON)
    assert not Dispute.objects.exists()


def test_another_artists_frame_does_not_exist_for_them(outsider, frame, client):
    with pytest.raises(DisputeNotFound):
        dispute_open(artist=outsider, frame_id=frame.pk, reason=REASON)
    client.force_login(outsider)
    assert client.get(f"/disputes/new/{frame.pk}/").status_code == 404
    assert client.post(f"/disputes/new/{frame.pk}/", {"reason": REASON}).status_code == 404
    assert not Dispute.objects.exists()


def test_it_refuses_a_frame_that_is_not_settled(artist, frame):
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.VERIFYING)
    with pytest.raises(DisputeRefused, match="Only a finished frame"):
        dispute_open(artist=artist, frame_id=frame.pk, reason=REASON)


def test_a_frame_is_disputed_once_per_delivery(artist, frame):
    dispute_open(artist=artist, frame_id=frame.pk, reason=REASON)
    with pytest.raises(DisputeRefused, match="already disputed"):
        dispute_open(artist=artist, frame_id=frame.pk, reason=REASON)
    assert Dispute.objects.count() == 1


def test_it_refuses_a_frame_whose_pay_has_matured(settings, artist, frame):
    settings.DISPUTE_WINDOW_HOURS = 1
    assert earnings_mature(now=timezone.now() + timedelta(hours=2)) == 1
    settings.DISPUTE_WINDOW_HOURS = 72  # e.g. the window was lengthened later
    with pytest.raises(DisputeRefused, match="already been paid"):
        dispute_open(artist=artist, frame_id=frame.pk, reason=REASON)


@pytest.mark.parametrize("reason", ["", "   ", "too short", "x" * 2001])
def test_the_form_refuses_a_missing_or_oversized_reason(client, artist, frame, reason):
    client.force_login(artist)
    response = client.post(f"/disputes/new/{frame.pk}/", {"reason": reason})
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not Dispute.objects.exists()


def test_the_form_opens_a_dispute_that_only_its_artist_can_see(client, artist, outsider, frame):
    client.force_login(artist)
    form = client.get(f"/disputes/new/{frame.pk}/")
    assert "You can dispute this frame until" in form.content.decode()
    response = client.post(f"/disputes/new/{frame.pk}/", {"reason": REASON})
    dispute = Dispute.objects.get()
    assert response["Location"] == f"/disputes/{dispute.pk}/"
    assert REASON in client.get(f"/disputes/{dispute.pk}/").content.decode()
    assert "frame 1" in client.get("/disputes/").content.decode()
    client.force_login(outsider)
    assert client.get(f"/disputes/{dispute.pk}/").status_code == 404
    assert "No disputes." in client.get("/disputes/").content.decode()


def test_the_form_shows_why_a_late_dispute_is_refused(client, artist, provider):
    old = settled_frame(artist=artist, provider=provider, settled_at=timezone.now() - timedelta(days=4))
    client.force_login(artist)
    response = client.post(f"/disputes/new/{old.pk}/", {"reason": REASON})
    assert response.status_code == 409  # the API's status for the same refusal
    assert "dispute window for this frame closed" in response.content.decode()
