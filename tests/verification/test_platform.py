"""The platform verifier for real: sandboxed bpy renders of crops and canary answers (one provider, no
other node idle, as in a one-machine demo)."""

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from marketplace import blobs
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState
from marketplace.nodes.models import WorkerNode
from marketplace.verification import canaries, platform
from marketplace.verification.crops import noisy_key
from marketplace.verification.models import CanaryAnswer, CropCheck, FrameCheck, LeaseSample
from render_kernels import load_image
from tests.fixtures.farm import demo_job
from tests.fixtures.market import make_node, make_queued_job
from tests.verification.helpers import png, take, truth_image
from workers.blend import Renderer, make_demo_scene

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("agent_queues", "manual_matching"),
]


@pytest.fixture(scope="module")
def demo_blend(tmp_path_factory) -> Path:
    return make_demo_scene(tmp_path_factory.mktemp("demo") / "scene.blend", frames=4, resolution=(64, 48), samples=8)


@pytest.fixture(scope="module")
def agent_renderer(demo_blend) -> Iterator[Renderer]:
    with Renderer(memory_mb=4096, timeout_s=120) as renderer:
        renderer.load(demo_blend, demo_blend.parent)
        yield renderer
    platform.close()


def render_and_report(node, renderer: Renderer, tmp: Path, **cheat) -> FrameLease:
    """An agent: take the lease, render its pinned manifest (plus `cheat`), upload frame and noisy pass."""
    delivery = dispatch.lease_create_for_node(node=node)
    take(node)
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    ext = "exr" if lease.manifest["file_format"] == "OPEN_EXR" else "png"
    stats = renderer.render({**lease.manifest, **cheat}, tmp / f"lease{lease.pk}.{ext}")
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(Path(stats["path"]).read_bytes()))
    if stats["noisy_path"]:
        blobs.blob_put(key=noisy_key(lease.result_key), fileobj=io.BytesIO(Path(stats["noisy_path"]).read_bytes()))
    assert dispatch.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True).accepted
    lease.refresh_from_db()
    return lease


def test_the_platform_verifies_real_renders_when_no_other_provider_is_idle(
    funded_artist, provider, demo_blend, agent_renderer, tmp_path
):
    job = demo_job(funded_artist, demo_blend, frames=3, width=64, height=48)
    node, _ = make_node(provider)

    honest = render_and_report(node, agent_renderer, tmp_path)
    check = FrameCheck.objects.get(render_lease=honest)
    assert check.state == FrameCheck.State.PASSED
    assert Frame.objects.get(pk=honest.frame_id).state == FrameState.SETTLED
    crops = list(check.crops.all())
    assert {c.verifier for c in crops} == {CropCheck.Verifier.PLATFORM}
    for crop in crops:  # the platform's crop render equals the node's frame, bit for bit
        assert crop.metrics["max_abs_error"] == 0 and crop.reference_key.endswith(".png")
        reference = load_image(blobs.default_storage.path(crop.reference_key))
        assert reference.shape[:2] == (crop.crop["h"], crop.crop["w"])

    cheat = render_and_report(node, agent_renderer, tmp_path, samples=4)
    assert FrameCheck.objects.get(render_lease=cheat).state == FrameCheck.State.FAILED
    assert Frame.objects.get(pk=cheat.frame_id).state == FrameState.QUEUED
    assert Job.objects.get(pk=job.pk).state == "running"


def test_references_rendered_while_the_node_renders_are_its_pixels_and_decide_its_check(
    funded_artist, provider, demo_blend, agent_renderer, tmp_path, monkeypatch, caplog
):
    from marketplace.verification import conf

    monkeypatch.setattr(conf, "REFERENCES_AHEAD", True)  # the test settings turn it off for inline tasks
    demo_job(funded_artist, demo_blend, frames=1, width=64, height=48)
    node, _ = make_node(provider)  # new: its lease is sampled, and the platform renders the crops at the lease
    with caplog.at_level("INFO", logger="marketplace.verification.platform"):
        lease = render_and_report(node, agent_renderer, tmp_path)
    check = FrameCheck.objects.get(render_lease=lease)
    assert lease.sampled and check.state == FrameCheck.State.PASSED, check.reason
    renders = [r for r in caplog.records if r.getMessage() == "event=platform_render"]
    assert len(renders) == check.crops.count()  # rendered ahead, none after the report
    references = LeaseSample.objects.get(render_lease=lease).references
    assert sorted(check.crops.values_list("reference_key", flat=True)) == sorted(references)
    assert {crop.metrics["max_abs_error"] for crop in check.crops.all()} == {0}  # bit for bit


def test_denoised_real_renders_pass_on_their_noisy_pass(funded_artist, provider, demo_blend, agent_renderer, tmp_path):
    job = demo_job(funded_artist, demo_blend, frames=2, width=64, height=48)
    Job.objects.filter(pk=job.pk).update(use_denoising=True)
    node, _ = make_node(provider)
    for _ in range(2):
        lease = render_and_report(node, agent_renderer, tmp_path)
        check = FrameCheck.objects.get(render_lease=lease)
        assert check.state == FrameCheck.State.PASSED, check.reason
        assert {c.reference_key.rsplit(".", 1)[1] for c in check.crops.all()} == {"exr"}
    assert set(Frame.objects.filter(job=job).values_list("state", flat=True)) == {FrameState.SETTLED}


def test_canary_answers_are_what_an_honest_node_renders(agent_renderer, tmp_path):
    job = canaries.canary_jobs_create(count=1, frames=2, resolution=(64, 48), samples=8)[0]
    assert job.is_canary and job.price_per_frame == 0 and job.state == "running"
    assert job.owner.is_platform and not job.owner.has_usable_password() and not job.owner.is_staff
    frames = list(Frame.objects.filter(job=job).order_by("number"))
    assert [f.state for f in frames] == [FrameState.QUEUED] * 2 and {f.price for f in frames} == {0}
    blend = tmp_path / "canary.blend"
    blend.write_bytes(blobs.blob_open(job.scene.storage_key).read())
    with Renderer(memory_mb=4096, timeout_s=120) as node_renderer:
        node_renderer.load(blend, tmp_path)
        for frame in frames:
            answer = load_image(blobs.default_storage.path(CanaryAnswer.objects.get(frame=frame).answer_key))
            manifest = dispatch.manifest_for(frame, node=WorkerNode(device_type="CPU"))
            rendered = node_renderer.render(manifest, tmp_path / f"f{frame.number}.png")
            assert np.array_equal(load_image(rendered["path"]), answer)


def test_a_frame_of_a_scene_blender_refuses_fails_its_check(funded_artist, provider, tmp_path):
    make_queued_job(funded_artist, frames=1, width=32, height=24)  # its scene is not a real .blend
    node, _ = make_node(provider)
    delivery = dispatch.lease_create_for_node(node=node)
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(truth_image())))
    assert dispatch.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True).accepted
    check = FrameCheck.objects.get(render_lease=lease)
    assert check.state == FrameCheck.State.FAILED and "refuses to render" in check.reason
    assert Frame.objects.get(pk=lease.frame_id).state == FrameState.QUEUED


def test_an_accepted_jobs_scene_is_loaded_before_its_first_crop_and_a_busy_verifier_keeps_its_scene(
    funded_artist, provider, demo_blend, agent_renderer, tmp_path, monkeypatch, caplog
):
    from marketplace.verification import conf, services

    monkeypatch.setattr(conf, "PLATFORM_PREWARM", True)  # the test settings turn it off for inline tasks
    platform.close()  # a fresh verifier, as after a worker start
    job = demo_job(funded_artist, demo_blend, frames=2, width=64, height=48)
    first = list(job.frames.values_list("pk", flat=True))
    with caplog.at_level("INFO", logger="marketplace.verification.platform"):
        assert services.platform_prewarm(frame_ids=first) is True
        assert services.platform_prewarm(frame_ids=first) is False  # loaded already: nothing to do
        node, _ = make_node(provider)
        render_and_report(node, agent_renderer, tmp_path)
    renders = [r for r in caplog.records if r.getMessage() == "event=platform_render"]
    assert renders and not any(r.scene_loaded or r.blender_started for r in renders)  # every crop found it warm
    assert [r.getMessage() for r in caplog.records].count("event=platform_prewarm") == 1

    # Another job's scene, while this one was used a moment ago: the verifier keeps what it is working on...
    other_blend = make_demo_scene(tmp_path / "other.blend", frames=2, resolution=(64, 48), samples=4)
    other = demo_job(funded_artist, other_blend, frames=1, width=64, height=48)
    other_frames = list(other.frames.values_list("pk", flat=True))
    assert services.platform_prewarm(frame_ids=other_frames) is False
    # ... and loads it once that one has been idle for PLATFORM_PREWARM_KEEP_S.
    monkeypatch.setattr(conf, "PLATFORM_PREWARM_KEEP_S", 0)
    assert services.platform_prewarm(frame_ids=other_frames) is True
    # A cancelled job's scene is not loaded; prewarm switched off loads nothing.
    Job.objects.filter(pk=job.pk).update(state="cancelled")
    assert services.platform_prewarm(frame_ids=first) is False
    monkeypatch.setattr(conf, "PLATFORM_PREWARM", False)
    platform.close()
    assert services.platform_prewarm(frame_ids=other_frames) is False
    platform.close()
