"""A check judges the result frozen at the report, and its provider cannot see where it looks until it is decided.

The attack (issue 10): report a cheap render, read the pending crop rectangles on the node page, render just those
crops, and PUT the patched image before the verifiers finish."""

import io
import logging

import numpy as np
import pytest
from django.conf import settings
from django.test import Client

from marketplace import blobs
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import LedgerTransaction
from marketplace.verification.crops import Crop
from marketplace.verification.models import CropCheck, FrameCheck, TrustEvent
from tests.fixtures.market import make_node, make_queued_job
from tests.fixtures.personas import PASSWORD
from tests.verification.helpers import other_provider, png, take, truth_image, verify_and_report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("agent_queues", "crop_leases_in_comparable_format"),
]


def put(url: str, body: bytes) -> int:
    return (
        Client()
        .generic("PUT", url.removeprefix(settings.PUBLIC_URL), body, content_type="application/octet-stream")
        .status_code
    )


def render_and_report(node, image: np.ndarray) -> tuple[FrameLease, dict]:
    """The node takes its frame, uploads `image` through its upload URL and reports it; returns the lease details."""
    dispatch.lease_create_for_node(node=node)
    message = take(node)
    details = dispatch.lease_details(node=node, lease_id=message["lease"], token=message["token"])
    assert put(details["upload_url"], png(image)) == 201
    outcome = dispatch.lease_report(node=node, lease_id=message["lease"], token=message["token"], ok=True)
    assert outcome.accepted, outcome.message
    return FrameLease.objects.get(pk=message["lease"]), details


def owner_page(user, node) -> str:
    client = Client()
    client.login(username=user.username, password=PASSWORD)
    return client.get(f"/verification/nodes/{node.pk}/").content.decode()


def positions(check: FrameCheck) -> list[str]:
    return [f"{c.crop['x']}, {c.crop['y']}, {c.crop['w']}\u00d7{c.crop['h']}" for c in check.crops.all()]


def test_the_node_page_shows_no_crop_positions_while_the_check_is_pending(funded_artist, provider, truth):
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, name="rig")
    verifier, _ = make_node(other_provider(), name="checker")
    lease, _ = render_and_report(node, truth)
    check = FrameCheck.objects.get(render_lease=lease)
    assert check.state == FrameCheck.State.PENDING  # one crop waits for the verifier node

    page = owner_page(provider, node)
    assert "data-crops-pending" in page
    for where in positions(check):
        assert where not in page, f"the pending check shows a crop at {where}"

    verify_and_report(verifier, truth)
    check.refresh_from_db()
    assert check.state == FrameCheck.State.PASSED
    page = owner_page(provider, node)
    assert all(where in page for where in positions(check))  # decided: shown


def test_a_patched_image_after_the_report_never_reaches_the_artist(funded_artist, provider, truth, manual_matching):
    job = make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, name="cheat")
    verifier, _ = make_node(other_provider(), name="checker")
    cheap = truth_image(seed=99)
    lease, details = render_and_report(node, cheap)
    frame = Frame.objects.get(job=job)
    reported = frame.result_key

    # The cheat renders the pending crops honestly and patches them into its image, then uploads it again.
    patched = cheap.copy()
    for crop in CropCheck.objects.filter(frame_check__render_lease=lease):
        region = Crop.from_dict(crop.crop)
        patched[region.y : region.y + region.h, region.x : region.x + region.w] = region.cut(truth)
    assert put(details["upload_url"], png(patched)) == 409
    verify_and_report(verifier, truth)

    frame.refresh_from_db()
    assert blobs.blob_read_checked(reported) == png(cheap)  # the frozen result is what was reported
    assert frame.state == FrameState.QUEUED and frame.result_key == ""  # rejected: rendered again elsewhere
    assert FrameCheck.objects.get(render_lease=lease).state == FrameCheck.State.FAILED
    assert not LedgerTransaction.objects.filter(idempotency_key=f"settle:frame:{frame.pk}").exists()


def test_a_result_swapped_in_storage_during_its_check_is_refused_without_blaming_the_node(
    funded_artist, provider, truth, manual_matching, caplog
):
    job = make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, name="rig")
    verifier, _ = make_node(other_provider(), name="checker")
    lease, _ = render_and_report(node, truth)  # honest; the platform's crops already matched
    frame = Frame.objects.get(job=job)
    blobs.blob_put(key=frame.result_key, fileobj=io.BytesIO(png(truth_image(seed=5))))  # storage-level swap

    with caplog.at_level(logging.ERROR):
        verify_and_report(verifier, truth)

    frame.refresh_from_db()
    check = FrameCheck.objects.get(render_lease=lease)
    assert check.state == FrameCheck.State.FAILED and "stored result was refused" in check.reason
    assert frame.state == FrameState.QUEUED and frame.result_key == ""
    assert "event=result_digest_mismatch" in caplog.text and "event=result_refused" in caplog.text
    assert not TrustEvent.objects.filter(node=node, kind=TrustEvent.Kind.FAIL).exists()  # not the node's doing
    assert not LedgerTransaction.objects.filter(idempotency_key=f"settle:frame:{frame.pk}").exists()
