"""What an agent's report and its frame's settlement ask of S3 (issue 17). With S3 every storage call is an HTTP
request that boto3 signs and the web or Celery worker waits for: at 1,667 frames a second (100,000 nodes at a frame
a minute) each request a frame makes is 1,667 more a second. Against a real S3 server (moto's), counted by
operation as botocore sends them."""

import base64
import hashlib
import io
import logging
from collections import Counter

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from marketplace import blobs
from marketplace.dispatch import services
from marketplace.dispatch.manifests import image_size
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import events
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import LedgerTransaction
from marketplace.verification import tasks as verification_tasks
from tests.fixtures.market import make_node, make_queued_job, png_bytes
from tests.fixtures.storage import BUCKET, PREFIX

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("agent_queues")]


@pytest.fixture
def leased(s3, funded_artist, provider):
    """A node holding a render lease of a one-frame job, on S3 storage."""
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    delivery = services.lease_create_for_node(node=node)
    assert delivery is not None
    return node, delivery, FrameLease.objects.get(pk=delivery.lease_id)


@pytest.fixture
def requests_sent(s3):
    """The S3 operations the storage's client sends from now on, by name."""
    sent: Counter[str] = Counter()
    default_storage.connection.meta.client.meta.events.register(
        "before-call.s3", lambda model, **_: sent.update([model.name])
    )
    return sent


def test_a_report_and_its_settlement_make_five_storage_requests_and_download_the_result_once(
    leased, requests_sent, django_capture_on_commit_callbacks
):
    node, delivery, lease = leased
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png_bytes(*image_size(lease.manifest))))  # the agent's
    requests_sent.clear()
    # The report: read the upload; have S3 copy it to the frozen result (with the SHA-256 checksum S3 computes: no
    # upload of the bytes again) and store the thumbnail; after commit, delete the upload. Then (the frame_rendered
    # task, run here after commit) the settlement checks the frozen result's digest: S3's checksum of it, in a HEAD.
    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True, stats={})
    assert outcome.accepted
    frame = Frame.objects.get(pk=lease.frame_id)
    assert frame.state == FrameState.SETTLED
    assert requests_sent == {"GetObject": 1, "CopyObject": 1, "PutObject": 1, "DeleteObject": 1, "HeadObject": 1}
    assert blobs.blob_read_checked(frame.result_key, sha256=frame.result_sha256)
    assert blobs.blob_exists(frame.thumbnail_key) and not blobs.blob_exists(lease.result_key)


def agent_writes_again_after_the_check(s3, key: str, data: bytes) -> None:
    """The agent PUTs its upload again while the report checks it (its URL is valid until it expires). moto copies
    on regardless of the copy's condition: the copy holds the new bytes, whose checksum S3 reports."""
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=data)


def store_refuses_the_copy(s3, key: str, data: bytes) -> None:
    """As S3 itself answers the copy then: 412, the source no longer has the ETag read."""
    agent_writes_again_after_the_check(s3, key, data)
    error = {"Error": {"Code": "PreconditionFailed", "Message": "At least one of the pre-conditions did not hold"}}
    client = default_storage.connection.meta.client

    def refuse(**_):
        raise client.exceptions.ClientError(error, "CopyObject")

    client.meta.events.register_first("before-call.s3.CopyObject", refuse)


@pytest.mark.parametrize("race", [agent_writes_again_after_the_check, store_refuses_the_copy])
def test_an_upload_written_again_while_it_is_checked_is_frozen_as_checked(
    leased, s3, requests_sent, race, monkeypatch, django_capture_on_commit_callbacks
):
    node, delivery, lease = leased
    checked = png_bytes(*image_size(lease.manifest), seed=1)
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(checked))
    read = blobs.blob_read_tagged

    def read_then_race(key, **kw):
        stored = read(key, **kw)
        race(s3, key, png_bytes(*image_size(lease.manifest), seed=9))
        return stored

    monkeypatch.setattr(blobs, "blob_read_tagged", read_then_race)
    requests_sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True, stats={}).accepted
    frame = Frame.objects.get(pk=lease.frame_id)
    assert frame.result_sha256 == hashlib.sha256(checked).hexdigest()
    assert blobs.blob_read_checked(frame.result_key, sha256=frame.result_sha256) == checked  # what was checked
    assert frame.state == FrameState.SETTLED  # its digest check passed
    assert requests_sent["PutObject"] == 2  # the bytes checked, over the copy; the thumbnail


def test_a_report_with_nothing_uploaded_is_refused_in_one_request(leased, requests_sent):
    node, delivery, lease = leased
    outcome = services.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True, stats={})
    assert not outcome.accepted and outcome.message == "no image was uploaded for this lease"
    assert requests_sent == {"GetObject": 1}
    assert FrameLease.objects.get(pk=lease.pk).state == FrameLease.State.FAILED


def test_an_oversized_upload_is_refused_in_one_request(leased, requests_sent, monkeypatch):
    node, delivery, lease = leased
    monkeypatch.setattr(services.conf, "RESULT_MAX_BYTES", 1_000)
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(b"\x89PNG" + b"\0" * 50_000))
    requests_sent.clear()
    outcome = services.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True, stats={})
    assert not outcome.accepted and "larger than 1000 bytes" in outcome.message
    assert requests_sent == {"GetObject": 1}


def overwrite_plain(s3, key: str, data: bytes) -> None:
    """Another writer's PUT, with no SHA-256 of its own: S3 keeps none for the object."""
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=data)


def overwrite_with_its_checksum(s3, key: str, data: bytes) -> None:
    """Another writer's PUT with the SHA-256 of what it writes: S3 keeps that one."""
    checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=data, ChecksumSHA256=checksum)


@pytest.mark.parametrize("overwrite", [overwrite_plain, overwrite_with_its_checksum])
def test_a_frozen_result_overwritten_on_s3_before_it_is_paid_is_refused(
    leased, s3, overwrite, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    node, delivery, lease = leased
    monkeypatch.setitem(events._subscribers, events.FRAME_RENDERED, [])  # the frame stays RENDERED after the report
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png_bytes(*image_size(lease.manifest), seed=1)))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True, stats={}).accepted
    frame = Frame.objects.get(pk=lease.frame_id)
    assert frame.state == FrameState.RENDERED and frame.thumbnail_key
    overwrite(s3, frame.result_key, png_bytes(*image_size(lease.manifest), seed=9))

    with caplog.at_level(logging.ERROR):
        verification_tasks.frame_rendered(frame.pk)  # frame_rendered's subscriber checks the digest before paying
    frame.refresh_from_db()
    assert frame.state == FrameState.QUEUED and frame.result_key == ""
    assert "stored result refused" in frame.last_error and "event=result_digest_mismatch" in caplog.text
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="settle:").exists()


def test_a_thumbnail_is_served_from_one_storage_request_and_only_to_its_artist(
    leased, requests_sent, client, funded_artist, outsider, django_capture_on_commit_callbacks
):
    node, delivery, lease = leased
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png_bytes(*image_size(lease.manifest))))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True, stats={}).accepted
    frame = Frame.objects.get(pk=lease.frame_id)
    url = reverse("jobs:thumb", args=[frame.job_id, frame.pk])
    requests_sent.clear()
    client.force_login(funded_artist)
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content == blobs.blob_read(frame.thumbnail_key) and response.content.startswith(b"\x89PNG")
    requests_sent.clear()
    assert client.get(url).status_code == 200
    assert requests_sent == {"GetObject": 1}  # 4 until session 19: a HEAD to look, three inside the file object
    client.force_login(outsider)
    requests_sent.clear()
    assert client.get(url).status_code == 404 and not requests_sent
