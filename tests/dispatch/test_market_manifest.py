"""The agent contract (workers/contract.py) on the marketplace's side: every manifest the market builds is one every
agent takes, the market's limits lie inside the contract's, and a value past them is refused before it reaches a
node."""

import hashlib
import json

import pytest
import redis
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from marketplace.checks import agent_contract_checks
from marketplace.dispatch import queues, services
from marketplace.dispatch.models import FrameLease
from marketplace.dispatch.serializers import RenderManifestSerializer
from marketplace.jobs import conf as jobs_conf
from marketplace.jobs.models import Frame, Job
from marketplace.nodes.models import WorkerNode
from marketplace.scenes import conf as scenes_conf
from marketplace.scenes.models import Scene
from tests.fixtures.market import make_node, make_queued_job
from workers import contract
from workers.contract import LIMITS, ContractError, Lease, RenderManifest

QUOTE = {"overhead_seconds": 0.5, "reference_seconds_per_unit": 2e-7, "load_seconds": 3.0}


def unsaved_frame(*, width: int = 64, height: int = 48, samples: int = 8, number: int = 1, **job_fields) -> Frame:
    """A frame with its job and scene, never saved: manifest_for reads only their fields."""
    scene = Scene(kind="blend", sha256=hashlib.sha256(b"s").hexdigest(), blend_path="a.blend", report={})
    scene.active_camera = ""  # what the database keeps for a report without one (`Scene.active_camera`)
    job = Job(scene=scene, resolution_x=width, resolution_y=height, samples=samples, seed=3, quote=QUOTE, **job_fields)
    return Frame(job=job, number=number)


def span(data, size: int, label: str) -> tuple[int, int]:
    """A random [start, start + length) inside [0, size)."""
    start = data.draw(st.integers(0, size - 1), label=f"{label} start")
    return start, data.draw(st.integers(1, size - start), label=f"{label} length")


@given(data=st.data())
@hypothesis_settings(max_examples=200, deadline=None)
def test_every_manifest_the_market_builds_is_one_every_agent_takes(data) -> None:
    width = data.draw(st.integers(jobs_conf.MIN_SIDE, scenes_conf.MAX_SIDE), label="width")
    height = data.draw(st.integers(jobs_conf.MIN_SIDE, scenes_conf.MAX_SIDE), label="height")
    frame = unsaved_frame(
        width=width,
        height=height,
        samples=data.draw(st.integers(1, jobs_conf.MAX_SAMPLES), label="samples"),
        number=data.draw(st.integers(jobs_conf.MIN_FRAME, jobs_conf.MAX_FRAME), label="frame"),
        output_format=data.draw(st.sampled_from(Job.Output.values), label="format"),
        use_denoising=data.draw(st.booleans(), label="denoised"),
        blender_series=data.draw(st.sampled_from(["4.5", "5.0"]), label="series"),
    )
    frame.job.scene.kind = data.draw(st.sampled_from(Scene.Kind.values), label="scene kind")
    frame.job.scene.active_camera = data.draw(st.sampled_from(["", "Camera"]), label="camera")
    if data.draw(st.booleans(), label="tiled"):
        frame.tile_x, frame.tile_w = span(data, width, "tile x")
        frame.tile_y, frame.tile_h = span(data, height, "tile y")
    node = WorkerNode(
        device_type=data.draw(st.sampled_from(WorkerNode.Device.values), label="device"),
        bench_score=data.draw(st.floats(0, 1e12), label="bench score"),
    )
    crop = None
    if data.draw(st.booleans(), label="verify crop"):
        image_w, image_h = (frame.tile_w, frame.tile_h) if frame.tile_x is not None else (width, height)
        (x, w), (y, h) = span(data, image_w, "crop x"), span(data, image_h, "crop y")
        crop = {"x": x, "y": y, "w": w, "h": h}
    manifest = services.manifest_for(frame, node=node, crop=crop)
    assert RenderManifest.from_dict(manifest).as_dict() == manifest  # every key is the contract's, every value in it
    assert RenderManifestSerializer(manifest).data == manifest  # and the OpenAPI schema describes it as sent


@pytest.mark.parametrize("bench_score", [5e-324, 1e-300])
def test_a_node_with_a_benchmark_score_too_small_to_divide_by_gets_a_manifest_without_a_budget(bench_score) -> None:
    """Any node may upload any non-negative score: one that makes the budget infinite (or divides by zero) must not
    stop the market from building its manifests (found by the property test above)."""
    frame = unsaved_frame(width=8192, height=8192, samples=4096)
    manifest = services.manifest_for(frame, node=WorkerNode(device_type="CPU", bench_score=bench_score))
    assert manifest["calibrated_budget_seconds"] is None and RenderManifest.from_dict(manifest).samples == 4096


@pytest.mark.parametrize(
    ("job_fields", "field"),
    [
        ({"samples": LIMITS.samples[1] + 1}, "samples"),
        ({"width": LIMITS.side[1] + 1}, "resolution_x"),
        ({"number": LIMITS.frame[1] + 1}, "frame"),
        ({"output_format": "JPEG"}, "file_format"),
    ],
)
def test_the_market_refuses_to_build_a_manifest_outside_the_contract(job_fields, field) -> None:
    with pytest.raises(ContractError, match=rf"manifest {field}="):
        services.manifest_for(unsaved_frame(**job_fields), node=WorkerNode(device_type="CPU"))


def test_a_crop_outside_the_frame_is_refused_by_the_market() -> None:
    with pytest.raises(ContractError, match=r"border=\[60, 0, 10, 10\] is not inside the 64x48 image"):
        services.manifest_for(
            unsaved_frame(), node=WorkerNode(device_type="CPU"), crop={"x": 60, "y": 0, "w": 10, "h": 10}
        )


def test_the_markets_limits_lie_inside_the_contracts() -> None:
    assert LIMITS.side[0] == jobs_conf.MIN_SIDE and scenes_conf.MAX_SIDE <= LIMITS.side[1]
    assert LIMITS.frame[0] <= jobs_conf.MIN_FRAME and jobs_conf.MAX_FRAME == LIMITS.frame[1]
    assert jobs_conf.MAX_SAMPLES <= LIMITS.samples[1]
    assert set(Job.Output.values) == set(contract.FILE_FORMATS)
    assert set(WorkerNode.Device.values) == set(contract.DEVICES)
    assert set(Scene.Kind.values) == set(contract.SCENE_KINDS)
    assert set(FrameLease.Kind.values) == set(contract.LEASE_KINDS)
    assert set(FrameLease.State.values) == set(contract.LEASE_STATES)
    assert set(WorkerNode.PauseMode.values) == set(contract.PAUSE_MODES)
    assert agent_contract_checks(None) == []


def test_a_market_setting_past_the_contract_fails_the_system_check(settings) -> None:
    settings.SCENE_MAX_SIDE = LIMITS.side[1] + 1
    settings.JOBS_MAX_SAMPLES = 0
    errors = agent_contract_checks(None)
    assert [e.id for e in errors] == ["market.E001", "market.E001"]
    assert "SCENE_MAX_SIDE is 65537: agents take only 4 to 65536" in errors[0].msg
    assert "JOBS_MAX_SAMPLES is 0" in errors[1].msg


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("agent_queues")
def test_the_lease_an_agent_fetches_is_one_it_takes(funded_artist, provider) -> None:
    make_queued_job(funded_artist, frames=1)
    node, token = make_node(provider, unchecked=True)
    assert services.match_frames() == 1
    message = json.loads(redis.Redis.from_url(settings.AGENT_BROKER_URL).rpop(queues.queue_key(node.pk)))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    answer = client.get(f"/api/v1/agent/leases/{message['lease']}/", HTTP_X_LEASE_TOKEN=message["token"]).json()
    lease = Lease.from_answer(answer)
    assert lease.id == message["lease"] and lease.kind == "render" and lease.manifest.resolution_x == 32
    assert lease.manifest.as_dict() == FrameLease.objects.get(pk=lease.id).manifest
