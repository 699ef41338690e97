"""What was verified is what is delivered: an upload URL writes once, for its lease, while it is active; the result is
frozen at the report under its SHA-256, and every later read checks that digest."""

import hashlib
import io
import json
import logging
import zipfile
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace import blobs
from marketplace.dispatch import queues, services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import events
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import LedgerTransaction
from marketplace.verification import tasks as verification_tasks
from tests.fixtures.market import make_node, make_queued_job, png_bytes
from tests.fixtures.personas import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]


def agent(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    return client


def take(node) -> dict:
    raw = redis.Redis.from_url(settings.AGENT_BROKER_URL).rpop(queues.queue_key(node.pk))
    assert raw is not None, "nothing was delivered to the node's queue"
    return json.loads(raw)


def put(url: str, body: bytes):
    return Client().generic("PUT", url.removeprefix(settings.PUBLIC_URL), body, content_type="application/octet-stream")


def lease_one(node, token) -> tuple[dict, dict]:
    msg = take(node)
    details = agent(token).get(f"/api/v1/agent/leases/{msg['lease']}/", HTTP_X_LEASE_TOKEN=msg["token"]).json()
    return msg, details


def report(token: str, msg: dict):
    return agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )


@pytest.fixture
def unchecked(funded_artist, provider):
    """A 2-frame job and an unchecked node (its frames settle at the report)."""
    job = make_queued_job(funded_artist, frames=2)
    node, token = make_node(provider, unchecked=True)
    return job, node, token


def test_an_upload_url_writes_once(unchecked):
    _, node, token = unchecked
    assert services.match_frames() == 1
    _, details = lease_one(node, token)
    assert put(details["upload_url"], png_bytes(32, 24, seed=1)).status_code == 201
    second = put(details["upload_url"], png_bytes(32, 24, seed=2))
    assert second.status_code == 409 and "already used" in second.json()["error"]
    lease = FrameLease.objects.get(node=node)
    with blobs.blob_open(lease.result_key) as f:
        assert f.read() == png_bytes(32, 24, seed=1)


def test_a_put_after_the_report_is_refused_and_the_frozen_result_stays(unchecked):
    _, node, token = unchecked
    assert services.match_frames() == 1
    msg, details = lease_one(node, token)
    honest = png_bytes(32, 24, seed=1)
    upload_key = FrameLease.objects.get(pk=msg["lease"]).result_key
    assert put(details["upload_url"], honest).status_code == 201
    assert report(token, msg).status_code == 200

    swapped = put(details["upload_url"], png_bytes(32, 24, seed=9))
    assert swapped.status_code == 409 and "done" in swapped.json()["error"]
    frame = Frame.objects.get(pk=FrameLease.objects.get(pk=msg["lease"]).frame_id)
    sha = hashlib.sha256(honest).hexdigest()
    assert frame.state == FrameState.SETTLED and frame.result_sha256 == sha
    assert frame.result_key == f"results/sha256/{sha}.png"  # content-addressed, no agent URL points there
    assert FrameLease.objects.get(pk=msg["lease"]).result_key == frame.result_key
    assert blobs.blob_read_checked(frame.result_key, sha256=sha) == honest
    assert not blobs.blob_exists(upload_key)  # the agent-written copy is gone once frozen


@pytest.mark.parametrize("end", ["expired", "revoked", "released"])
def test_a_put_after_the_lease_ended_is_refused(unchecked, end):
    _, node, token = unchecked
    assert services.match_frames() == 1
    msg, details = lease_one(node, token)
    lease = FrameLease.objects.get(pk=msg["lease"])
    if end == "expired":
        services.leases_reap(now=timezone.now() + timedelta(hours=1))
    elif end == "revoked":
        services.leases_revoke_for_frames(frame_ids=[lease.frame_id])
    else:
        agent(token).post(f"/api/v1/agent/leases/{msg['lease']}/release/", {"token": msg["token"]}, format="json")
    r = put(details["upload_url"], png_bytes(32, 24))
    assert r.status_code == 409 and end in r.json()["error"]
    assert not blobs.blob_exists(lease.result_key)


def test_an_upload_url_past_its_lease_expiry_is_refused_before_the_reaper_runs(unchecked):
    _, node, token = unchecked
    assert services.match_frames() == 1
    msg, details = lease_one(node, token)
    FrameLease.objects.filter(pk=msg["lease"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = put(details["upload_url"], png_bytes(32, 24))
    assert r.status_code == 409 and "expired" in r.json()["error"]


def test_a_put_link_that_names_no_lease_is_refused():
    url = blobs.signed_url(key="results/sha256/" + "0" * 64 + ".png", method="PUT", expires_s=60)
    r = put(url, png_bytes(32, 24))
    assert r.status_code == 403 and not blobs.blob_exists("results/sha256/" + "0" * 64 + ".png")


def test_a_swap_after_settle_never_reaches_the_zip(unchecked, funded_artist, caplog):
    job, node, token = unchecked
    results = {}
    for seed in (1, 2):
        services.match_frames()  # the first report already leased the second frame after commit
        msg, details = lease_one(node, token)
        results[seed] = png_bytes(32, 24, seed=seed)
        put(details["upload_url"], results[seed])
        assert report(token, msg).status_code == 200
        assert put(details["upload_url"], png_bytes(32, 24, seed=9)).status_code == 409  # the agent's swap
    first, second = job.frames.order_by("number")
    assert first.state == second.state == FrameState.SETTLED
    # Someone with storage access swaps the first frame's frozen image: it must not be delivered.
    blobs.blob_put(key=first.result_key, fileobj=io.BytesIO(png_bytes(32, 24, seed=9)))

    client = Client()
    client.login(username=funded_artist.username, password=PASSWORD)
    with caplog.at_level(logging.ERROR):
        response = client.get(reverse("jobs:download", args=[job.pk]))
        archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    names = archive.namelist()
    assert f"job{job.pk}/frame_000001.png" not in names
    assert archive.read(f"job{job.pk}/frame_000002.png") == results[2]
    assert "frame_000001.png" in archive.read("WITHHELD.txt").decode()
    assert png_bytes(32, 24, seed=9) not in b"".join(archive.read(n) for n in names)
    assert "event=result_digest_mismatch" in caplog.text


def test_a_result_tampered_before_it_is_paid_is_refused_and_the_frame_requeued(unchecked, monkeypatch, caplog):
    _, node, token = unchecked
    monkeypatch.setitem(events._subscribers, events.FRAME_RENDERED, [])  # the frame stays RENDERED after the report
    assert services.match_frames() == 1
    msg, details = lease_one(node, token)
    put(details["upload_url"], png_bytes(32, 24, seed=1))
    assert report(token, msg).status_code == 200
    frame = Frame.objects.get(pk=FrameLease.objects.get(pk=msg["lease"]).frame_id)
    assert frame.state == FrameState.RENDERED
    blobs.blob_put(key=frame.result_key, fileobj=io.BytesIO(png_bytes(32, 24, seed=9)))

    with caplog.at_level(logging.ERROR):
        verification_tasks.frame_rendered(frame.pk)  # frame_rendered's subscriber checks the digest before paying
    frame.refresh_from_db()
    assert frame.state == FrameState.QUEUED and frame.result_key == "" and not frame.thumbnail_key
    assert "stored result refused" in frame.last_error
    assert "event=result_refused" in caplog.text and "event=result_digest_mismatch" in caplog.text
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="settle:").exists()


def test_a_result_swapped_while_the_zip_is_sent_breaks_the_download(unchecked, funded_artist, monkeypatch):
    from marketplace.jobs import downloads

    job, node, token = unchecked
    services.match_frames()
    msg, details = lease_one(node, token)
    put(details["upload_url"], png_bytes(32, 24, seed=1))
    assert report(token, msg).status_code == 200
    real_chunks, reads = blobs.blob_chunks, []

    def swapping_chunks(key):  # the digest pass reads the frozen bytes, the send pass gets swapped ones
        reads.append(key)
        return real_chunks(key) if len(reads) == 1 else iter([png_bytes(32, 24, seed=9)])

    monkeypatch.setattr(blobs, "blob_chunks", swapping_chunks)
    with pytest.raises(blobs.DigestMismatch):
        b"".join(downloads.zip_stream(downloads.members(job, folder="job")))
