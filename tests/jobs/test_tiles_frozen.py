"""Stitching reads each tile's frozen result and checks it against the digest recorded at its report."""

import io
import logging

import pytest

from marketplace import blobs
from marketplace.jobs.assembly import AssemblyError
from marketplace.jobs.models import AssembledFrame, Frame
from marketplace.jobs.services import frame_assemble, job_accept
from marketplace.jobs.states import FrameState
from tests.jobs.test_tiles import cut, png, settle, source, still_quote, tiles_of


def deliver_frozen(tile: Frame, node, data: bytes) -> None:
    """Leave a tile where an accepted report does: frozen under its SHA-256, digest recorded."""
    key, sha = blobs.blob_freeze(data=data, ext="png")
    Frame.objects.filter(pk=tile.pk).update(state=FrameState.RENDERED, node=node, result_key=key, result_sha256=sha)


@pytest.fixture
def still(funded_artist):
    """An accepted 2x2 tiled PNG still."""
    return job_accept(job_id=still_quote(funded_artist, side=2).pk, owner=funded_artist)


@pytest.mark.django_db
def test_a_tile_swapped_in_storage_is_never_stitched(still, node, django_capture_on_commit_callbacks, caplog):
    image = source(3)
    tiles = tiles_of(still)
    for tile in tiles:
        deliver_frozen(tile, node, png(cut(image, tile)))
    swapped = Frame.objects.get(pk=tiles[0].pk)
    other = source(3, seed=7)
    blobs.blob_put(key=swapped.result_key, fileobj=io.BytesIO(png(cut(other, swapped))))
    with caplog.at_level(logging.ERROR):
        for tile in tiles:
            settle(tile, node, django_capture_on_commit_callbacks)  # the stitch task refuses, logged
    assert not AssembledFrame.objects.filter(job=still).exists()
    with pytest.raises(AssemblyError, match="does not match its recorded SHA-256"):
        frame_assemble(job_id=still.pk, number=1)
    assert "event=result_digest_mismatch" in caplog.text
