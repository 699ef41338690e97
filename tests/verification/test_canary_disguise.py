"""Canaries cannot be spotted: a reserved owner nobody can be, manifests shaped like artists' jobs, and no job
id or canary hint in anything a provider reads (manifest, lease payload, upload URL, node pages)."""

import io
import zlib
from urllib.parse import urlparse

import pytest
from django.core import signing
from django.test import Client

from marketplace import blobs
from marketplace.accounts.models import User
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, Job
from marketplace.nodes.models import WorkerNode
from marketplace.verification import canaries, services
from marketplace.verification.models import CanaryAnswer, TrustEvent
from tests.fixtures.market import REPORT, make_node, make_queued_job, make_scene
from tests.fixtures.personas import PASSWORD
from tests.verification.helpers import png, take, truth_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues", "manual_matching")]


def url_payload(url: str) -> str:
    """The readable part of a signed blob URL (Django signing signs, it does not encrypt)."""
    token = urlparse(url).path.rstrip("/").rsplit("/", 1)[-1]
    payload = token.split(":")[0]
    data = signing.b64_decode(payload.lstrip(".").encode())
    return (zlib.decompress(data) if payload.startswith(".") else data).decode() + url


def artist_job(owner) -> Job:
    """An artist's job as artists make them: seed 0, their own file name, odd frame numbers, EXR."""
    scene = make_scene(owner, content=b"an artist's scene")
    scene.blend_path = "shot_010_v3.blend"
    scene.save(update_fields=["blend_path"])
    job = make_queued_job(owner, frames=3, scene=scene, width=48, height=36, samples=16)
    Job.objects.filter(pk=job.pk).update(frame_start=101, frame_end=103, output_format=Job.Output.EXR)
    Frame.objects.filter(job=job).delete()
    Frame.objects.bulk_create(
        Frame(job=job, number=n, price=job.price_per_frame, state="queued") for n in (101, 102, 103)
    )
    job.refresh_from_db()
    return job


def shaped_canary(shape: canaries.CanaryShape) -> Job:
    """A canary job stored as canary_jobs_create does (minus the bpy render), with its answers."""
    report = {
        **REPORT,
        "frame_start": shape.frame_start,
        "frame_end": shape.frame_start + (shape.frames - 1) * shape.frame_step,
        "effective_width": shape.width,
        "effective_height": shape.height,
        "samples": shape.samples,
    }
    job = canaries.canary_job_store(
        owner=canaries.canary_owner(), blend=b"a canary scene", report=report, name="scene", shape=shape
    )
    for frame in job.frames.all():
        key = blobs.blob_put(key=f"canaries/test/{frame.pk}.png", fileobj=io.BytesIO(png(truth_image())))
        CanaryAnswer.objects.create(frame=frame, answer_key=key)
    canaries.canary_job_open(job_id=job.pk)
    return job


def test_the_canary_owner_is_a_flagged_account_that_nobody_can_sign_up_as_or_log_in_as(client):
    signup = client.post(
        "/accounts/signup/",
        {
            "username": "platform-canaries",
            "password1": "Sq4tter-pass-9",
            "password2": "Sq4tter-pass-9",
            "role": "provider",
        },
    )
    assert signup.status_code == 302
    squatter = User.objects.get(username="platform-canaries")

    owner = canaries.canary_owner()
    assert owner != squatter and not squatter.is_platform
    assert owner.is_platform and not owner.has_usable_password() and not owner.is_staff
    assert canaries.canary_owner() == owner  # found again by its flag
    assert not owner.api_tokens.exists()
    assert not Client().login(username=owner.username, password="")
    assert not Client().login(username=owner.username, password="!")
    job = shaped_canary(canaries.canary_shape(frames=2, resolution=(32, 24), samples=8))
    assert job.owner == owner and not Job.objects.filter(owner=squatter).exists()


def test_a_canary_is_shaped_like_an_artist_job_and_its_lease_names_no_job(funded_artist, provider, monkeypatch):
    real = artist_job(funded_artist)
    shape = canaries.canary_shape(frames=6, resolution=(320, 180), samples=32)
    assert (
        shape.width,
        shape.height,
        shape.samples,
        shape.seed,
        shape.frame_start,
        shape.frames,
        shape.output_format,
        shape.blend_name,
    ) == (48, 36, 16, 0, 101, 3, "OPEN_EXR", "shot_010_v3.blend")
    canary = shaped_canary(shape)

    node, _ = make_node(provider)
    services.canary_offers_renew()
    monkeypatch.setattr(services, "_chance", lambda rate: False)
    real_delivery = dispatch.lease_create_for_node(node=node)
    real_message = take(node)
    real_details = dispatch.lease_details(node=node, lease_id=real_delivery.lease_id, token=real_delivery.token)
    dispatch.lease_release(node=node, lease_id=real_delivery.lease_id, token=real_delivery.token)
    monkeypatch.setattr(services, "_chance", lambda rate: True)
    delivery = dispatch.lease_create_for_node(node=node)
    message = take(node)
    details = dispatch.lease_details(node=node, lease_id=delivery.lease_id, token=delivery.token)
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    assert lease.frame.job_id == canary.pk

    # The manifest is the artist job's in every field but the scene's own hash (and frame numbers match too).
    differ = {k for k in details["manifest"] if details["manifest"][k] != real_details["manifest"][k]}
    assert differ <= {"scene_sha256", "frame"} and set(details["manifest"]) == set(real_details["manifest"])
    assert set(message) == set(real_message) == {"lease", "token", "kind"}
    # Nothing the node reads names a job or a frame row: not the manifest, not the URLs' signed keys.
    for d, job in ((details, canary), (real_details, real)):
        assert "job" not in d["manifest"] and "frame_id" not in d["manifest"]
        for url in (d["upload_url"], d["scene_url"]):
            readable = url_payload(url)  # what a node can read in the URL without any key
            assert f"job{job.pk}" not in readable and "canar" not in readable
        assert "canar" not in str(d).lower()


def test_the_node_pages_show_no_job_id_and_no_canary(provider, admin_user, monkeypatch):
    job = shaped_canary(canaries.canary_shape(frames=1, resolution=(32, 24), samples=8))
    node, _ = make_node(provider)
    services.canary_offers_renew()
    monkeypatch.setattr(services, "_chance", lambda rate: True)
    frame = services.canary_frame_for(node=node)
    assert lifecycle.frames_lease(frame_ids=[frame.pk]) == [frame.pk]
    delivery = dispatch._lease_open(frame=frame, node=node, kind=FrameLease.Kind.RENDER)
    take(node)
    owner = Client()
    owner.login(username=provider.username, password=PASSWORD)
    dashboard = owner.get("/nodes/").content.decode()
    assert "frame 1" in dashboard and f"job {job.pk}" not in dashboard  # the current frame, without its job

    lease = FrameLease.objects.get(pk=delivery.lease_id)
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(truth_image(seed=5))))  # a wrong answer
    assert dispatch.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True).accepted
    assert TrustEvent.objects.get(node=node).kind == TrustEvent.Kind.CANARY_FAIL
    WorkerNode.objects.filter(pk=node.pk).update(status="idle")

    page = owner.get(f"/verification/nodes/{node.pk}/").content.decode()
    assert "Check failed" in page and "SSIM" in page
    assert "anary" not in page and "known answer" not in page and f"job {job.pk}" not in page
    assert 'data-check="failed"' not in page  # the canary's whole-frame check is not listed for the provider
    admin = Client()
    admin.login(username=admin_user.username, password=PASSWORD)
    seen_by_admin = admin.get(f"/verification/nodes/{node.pk}/").content.decode()
    assert "Canary failed" in seen_by_admin and f"frame 1 of job {job.pk}" in seen_by_admin


def test_canary_jobs_created_with_bpy_follow_an_artist_jobs_shape(funded_artist):
    artist_job(funded_artist)
    job = canaries.canary_jobs_create(count=1, frames=2, resolution=(320, 180), samples=32)[0]
    assert (job.resolution_x, job.resolution_y, job.samples, job.seed, job.output_format) == (48, 36, 16, 0, "OPEN_EXR")
    assert job.frame_numbers == [101, 102] and job.scene.blend_path == "shot_010_v3.blend"
    assert job.scene.report["frame_start"] == 101 and job.state == "running"
    assert CanaryAnswer.objects.filter(frame__job=job).count() == 2  # answered by the platform's own render
