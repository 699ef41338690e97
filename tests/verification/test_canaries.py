"""Canary frames: indistinguishable from artist work, judged against their known answer, no money moved.

Matching swaps a canary in for a node's next artist frame (`canary_frame_for`, then the usual QUEUED ->
LEASED claim and lease); `lease_canary` does the same directly. The real answer render is in test_platform.py.
"""

import io

import pytest

from marketplace import blobs
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import LedgerTransaction
from marketplace.verification import canaries, policy, services
from marketplace.verification.models import CanaryAnswer, FrameCheck, NodeTrust, TrustEvent
from tests.fixtures.market import REPORT, make_node, make_queued_job, make_scene
from tests.verification.helpers import png, take, truth_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues", "manual_matching")]


@pytest.fixture
def always(monkeypatch):
    monkeypatch.setattr(services, "_chance", lambda rate: True)


def canary_job(*, frames: int = 2, content: bytes = b"canary scene"):
    report = {**REPORT, "frame_start": 1, "frame_end": frames, "effective_width": 32, "effective_height": 24}
    job = canaries.canary_job_store(owner=canaries.canary_owner(), blend=content, report=report, name="scene")
    for frame in job.frames.all():
        key = blobs.blob_put(key=f"canaries/test/{frame.pk}.png", fileobj=io.BytesIO(png(truth_image())))
        CanaryAnswer.objects.create(frame=frame, answer_key=key)
    canaries.canary_job_open(job_id=job.pk)
    return job


def lease_canary(node) -> tuple[FrameLease, dict]:
    """What dispatch does when `canary_frame_for` offers a frame: claim it, open a render lease, deliver."""
    frame = services.canary_frame_for(node=node)
    assert frame is not None
    assert lifecycle.frames_lease(frame_ids=[frame.pk]) == [frame.pk]
    delivery = dispatch._lease_open(frame=frame, node=node, kind=FrameLease.Kind.RENDER)
    return FrameLease.objects.get(pk=delivery.lease_id), take(node)


def report(node, lease, message, image) -> None:
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(image)))
    assert dispatch.lease_report(node=node, lease_id=lease.pk, token=message["token"], ok=True).accepted


def test_a_canary_lease_looks_exactly_like_artist_work(funded_artist, provider, monkeypatch):
    make_queued_job(funded_artist, frames=1, width=32, height=24)
    canary_job()
    node, _ = make_node(provider)
    monkeypatch.setattr(services, "_chance", lambda rate: False)
    real = dispatch.lease_create_for_node(node=node)
    real_message = take(node)
    real_lease = FrameLease.objects.get(pk=real.lease_id)
    assert not real_lease.frame.job.is_canary
    dispatch.lease_release(node=node, lease_id=real.lease_id, token=real.token)

    monkeypatch.setattr(services, "_chance", lambda rate: True)
    canary = dispatch.lease_create_for_node(node=node)  # matching's own hook swaps in the canary
    lease, message = FrameLease.objects.get(pk=canary.lease_id), take(node)
    assert lease.frame.job.is_canary
    assert set(message) == set(real_message) and message["kind"] == real_message["kind"] == "render"
    assert set(lease.manifest) == set(real_lease.manifest)
    assert {k: type(v) for k, v in lease.manifest.items()} == {k: type(v) for k, v in real_lease.manifest.items()}
    same = {k for k in lease.manifest if lease.manifest[k] == real_lease.manifest[k]}
    assert {
        "samples",
        "resolution_x",
        "resolution_y",
        "file_format",
        "device",
        "scene_kind",
        "blend_path",
        "camera",
        "use_denoising",
        "blender_series",
        "border",
        "max_render_seconds",
    } <= same
    assert "canary" not in str(lease.manifest).lower()
    details = dispatch.lease_details(node=node, lease_id=lease.pk, token=message["token"])
    assert set(details) == {"lease", "kind", "expires_at", "manifest", "scene_url", "upload_url"}


def test_a_wrong_canary_is_a_failed_check_and_moves_no_money(provider, always):
    job = canary_job()
    node, _ = make_node(provider)
    transactions = LedgerTransaction.objects.count()
    lease, message = lease_canary(node)
    report(node, lease, message, truth_image(seed=5))

    check = FrameCheck.objects.get(render_lease=lease)
    assert (check.kind, check.state) == ("canary", "failed") and "differs" in check.reason
    assert check.crops.get().crop == {"x": 0, "y": 0, "w": 32, "h": 24}  # the whole frame
    event = TrustEvent.objects.get(node=node)
    assert event.kind == TrustEvent.Kind.CANARY_FAIL and "SSIM" in event.reason
    assert NodeTrust.objects.get(node=node).checks_failed == 1
    frame = Frame.objects.get(pk=lease.frame_id)
    assert frame.state == FrameState.QUEUED and frame.node_id is None and frame.job_id == job.pk
    assert LedgerTransaction.objects.count() == transactions


def test_a_right_canary_counts_as_a_pass_and_returns_to_the_pool(provider, always):
    canary_job()
    node, _ = make_node(provider)
    transactions = LedgerTransaction.objects.count()
    lease, message = lease_canary(node)
    report(node, lease, message, truth_image())
    check = FrameCheck.objects.get(render_lease=lease)
    assert (check.kind, check.state) == ("canary", "passed")
    assert NodeTrust.objects.get(node=node).checks_passed == 1
    assert Frame.objects.get(pk=lease.frame_id).state == FrameState.QUEUED
    assert LedgerTransaction.objects.count() == transactions


def test_canaries_follow_the_trust_rate_and_never_repeat_a_scene_for_a_provider(provider, monkeypatch):
    canary_job(content=b"scene one")
    node, _ = make_node(provider, name="a")
    sibling, _ = make_node(provider, name="b")
    NodeTrust.objects.create(node=node, consecutive_passes=50, check_rate=policy.FLOOR)
    rates = []
    monkeypatch.setattr(services, "_chance", lambda rate: rates.append(rate) or False)
    assert services.canary_frame_for(node=node) is None
    assert rates == [pytest.approx(policy.FLOOR * policy.CANARY_SHARE)]

    monkeypatch.setattr(services, "_chance", lambda rate: True)
    lease, message = lease_canary(node)
    report(node, lease, message, truth_image())
    assert services.canary_frame_for(node=node) is None  # its provider has seen that scene
    assert services.canary_frame_for(node=sibling) is None
    canary_job(content=b"scene two")
    assert services.canary_frame_for(node=sibling).job.scene.sha256 != lease.frame.job.scene.sha256


def test_canary_frames_need_an_answer(provider, always):
    job = canary_job(frames=1)
    CanaryAnswer.objects.filter(frame__job=job).delete()
    node, _ = make_node(provider)
    assert services.canary_frame_for(node=node) is None


def test_artist_scenes_are_never_canaries(funded_artist, provider, always):
    make_queued_job(funded_artist, frames=2, scene=make_scene(funded_artist))
    node, _ = make_node(provider)
    assert services.canary_frame_for(node=node) is None
