"""Dispute evidence is read from frozen results, checked against their digest: a swapped image is refused."""

import io
import logging

import pytest

from marketplace import blobs
from marketplace.disputes import evidence
from tests.fixtures.market import png_bytes


@pytest.mark.django_db
def test_evidence_refuses_a_frozen_image_swapped_in_storage(media, caplog):
    key, _ = blobs.blob_freeze(data=png_bytes(32, 24, seed=1), ext="png")
    assert evidence.image_load(key, size=(32, 24)).shape == (24, 32, 3)
    blobs.blob_put(key=key, fileobj=io.BytesIO(png_bytes(32, 24, seed=9)))
    with caplog.at_level(logging.ERROR), pytest.raises(evidence.EvidenceUnavailable, match="refused"):
        evidence.image_load(key)
    assert "event=result_digest_mismatch" in caplog.text


@pytest.mark.django_db
def test_evidence_refuses_an_image_of_the_wrong_size_from_its_header(media):
    key, _ = blobs.blob_freeze(data=png_bytes(64, 48), ext="png")
    with pytest.raises(evidence.EvidenceUnavailable, match="image is 64x48, leased 32x24"):
        evidence.image_load(key, size=(32, 24))
