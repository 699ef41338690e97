"""Tiles of a still through dispatch and verification: a tile lease renders only its rectangle, its upload
must have the tile's size, and its verification crops are drawn inside the tile and re-rendered at the
tile's place in the frame (by other nodes or the platform)."""

import io

import numpy as np
import pytest

from marketplace import blobs
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.verification.crops import Crop
from marketplace.verification.models import CropCheck, FrameCheck
from tests.fixtures.market import make_node, make_queued_job
from tests.verification.helpers import lease_and_report, other_provider, png, take, truth_image, verify_and_report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("agent_queues", "crop_leases_in_comparable_format"),
]
W, H = 64, 48
TILE = (32, 24, 32, 24)  # the bottom-right quarter: x, y (from the top), w, h
PRICE = 2_000_000


@pytest.fixture
def still(funded_artist):
    """A one-frame job whose only queued frame is the bottom-right tile of a 64x48 still."""
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=W, height=H)
    x, y, w, h = TILE
    Frame.objects.filter(job=job).update(tile_x=x, tile_y=y, tile_w=w, tile_h=h)
    return job


@pytest.fixture
def truth(platform_truth) -> np.ndarray:
    platform_truth.image = truth_image(width=W, height=H)
    return platform_truth.image


def tile_of(image: np.ndarray) -> np.ndarray:
    return Crop(*TILE).cut(image).copy()


def test_a_tile_lease_renders_only_its_rectangle_and_wants_an_upload_of_that_size(still, provider, truth):
    node, _ = make_node(provider, unchecked=True)
    delivery = dispatch.lease_create_for_node(node=node)
    take(node)
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    assert lease.manifest["border"] == list(TILE)
    assert (lease.manifest["resolution_x"], lease.manifest["resolution_y"]) == (W, H)  # the frame's own size

    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(truth)))  # the whole frame: wrong size
    outcome = dispatch.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True)
    assert not outcome.accepted and outcome.message == "image is 64x48, leased 32x24"


def test_a_flat_tile_is_a_valid_upload(still, provider, truth):
    """A whole frame of one colour is a failed render; a tile of clear sky is not."""
    node, _ = make_node(provider, unchecked=True)
    flat = np.full((TILE[3], TILE[2], 4), 200, np.uint8)
    lease_and_report(node, flat)
    assert Frame.objects.get(job=still).state == FrameState.SETTLED


def test_a_tile_is_verified_by_crops_inside_it_rendered_where_the_tile_sits(still, provider, truth, platform_truth):
    node, _ = make_node(provider, name="rig")
    verifier, _ = make_node(other_provider(), name="checker")
    lease = lease_and_report(node, tile_of(truth))
    check = FrameCheck.objects.get(render_lease=lease)
    crops = list(check.crops.all())
    assert crops
    for crop in crops:  # in the tile's pixels
        c = crop.crop
        assert c["x"] >= 0 and c["y"] >= 0 and c["x"] + c["w"] <= TILE[2] and c["y"] + c["h"] <= TILE[3]
    x0, y0, w0, h0 = TILE
    for manifest in platform_truth.renders:  # in the frame's pixels, inside the tile
        x, y, w, h = manifest["border"]
        assert x0 <= x and y0 <= y and x + w <= x0 + w0 and y + h <= y0 + h0, manifest["border"]
    node_crop = check.crops.get(verifier=CropCheck.Verifier.NODE)
    verify_lease = node_crop.verify_lease
    relative = node_crop.crop
    assert verify_lease.manifest["border"] == [x0 + relative["x"], y0 + relative["y"], relative["w"], relative["h"]]

    verify_and_report(verifier, tile_of(truth))  # the verifier renders the same place of the same frame
    frame = Frame.objects.get(job=still)
    check.refresh_from_db()
    assert check.state == FrameCheck.State.PASSED and frame.state == FrameState.SETTLED


def test_a_wrong_tile_fails_its_check_and_is_rendered_again(still, provider, truth):
    node, _ = make_node(provider, name="cheat")
    lease_and_report(node, tile_of(truth_image(seed=7, width=W, height=H)))  # the right size, wrong pixels
    check = FrameCheck.objects.get(render_lease__node=node)
    frame = Frame.objects.get(job=still)
    assert check.state == FrameCheck.State.FAILED
    assert frame.state == FrameState.QUEUED and (frame.tile_x, frame.tile_y) == TILE[:2]
