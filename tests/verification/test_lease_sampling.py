"""Sampling when a render lease is granted (`services.lease_sampled`), and the platform's reference crops rendered
while the node renders (`services.references_render`), through the real lease/report path (Redis agent queues,
eager Celery tasks). The platform verifier is `platform_truth` (crops of the true image); test_platform.py
renders them with Blender.
"""

import io
import re
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace import blobs
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.verification import conf, policy, services
from marketplace.verification.crops import Crop
from marketplace.verification.models import CropCheck, FrameCheck, LeaseSample, NodeTrust
from tests.fixtures.market import make_node, make_queued_job
from tests.verification.helpers import lease_and_report, other_provider, png, take, truth_image, verify_and_report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("agent_queues", "crop_leases_in_comparable_format", "manual_matching"),
]


def rate(node, value: float) -> None:
    NodeTrust.objects.update_or_create(node=node, defaults={"check_rate": value, "consecutive_passes": 100})


def lease_for(node) -> tuple[FrameLease, dict, dict]:
    """A render lease granted to `node`, the message its agent takes and the details the agent API answers."""
    delivery = dispatch.lease_create_for_node(node=node)
    assert delivery is not None
    message = take(node)
    details = dispatch.lease_details(node=node, lease_id=delivery.lease_id, token=delivery.token)
    return FrameLease.objects.get(pk=delivery.lease_id), message, details


def report(node, delivery, image) -> FrameLease:
    """The agent uploads `image` for this delivery's lease and reports it."""
    take(node)
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(image)))
    assert dispatch.lease_report(node=node, lease_id=lease.pk, token=delivery.token, ok=True).accepted
    lease.refresh_from_db()
    return lease


def test_a_lease_is_drawn_when_granted_and_its_node_cannot_tell(funded_artist, provider):
    make_queued_job(funded_artist, frames=2)
    checked, _ = make_node(provider, name="new")  # a new node: every result checked
    trusted, _ = make_node(provider, name="old")
    rate(trusted, 0.0)

    sampled, sampled_message, sampled_details = lease_for(checked)
    unsampled, unsampled_message, unsampled_details = lease_for(trusted)
    assert sampled.sampled is True and unsampled.sampled is False
    sample = LeaseSample.objects.get(render_lease=sampled)
    assert len(sample.crops) == policy.CROPS_PER_CHECK and sample.references == []  # not rendered inline
    for crop in map(Crop.from_dict, sample.crops):
        assert 0 <= crop.x and crop.x + crop.w <= 32 and 0 <= crop.y and crop.y + crop.h <= 24
    assert not LeaseSample.objects.filter(render_lease=unsampled).exists()
    # What each agent gets is the same shape: nothing says which frame is checked, nor where.
    assert sampled_message.keys() == unsampled_message.keys() == {"lease", "token", "kind"}
    assert sampled_details.keys() == unsampled_details.keys()
    assert sampled_details["manifest"].keys() == unsampled_details["manifest"].keys()
    assert "sampled" not in str(sampled_details) and "crop" not in str(sampled_details)


def test_a_sampled_lease_costs_its_agents_call_what_an_unsampled_one_does(funded_artist, provider, monkeypatch):
    """The node must not tell a checked frame from its call's time: the same statements, the same after-commit
    work. (Choosing the crops in the call made it 1.5 ms slower, bench_agent_api at check rate 0.5.)"""
    asked = []
    monkeypatch.setattr(services, "_samples_prepare_soon", lambda: asked.append("samples_prepare"))
    monkeypatch.setattr(policy, "canary_rate", lambda **_: 0.0)  # no canary draw in either call
    make_queued_job(funded_artist, frames=3)
    first, _ = make_node(provider, name="first")
    dispatch.lease_create_for_node(node=first)  # the job's first lease starts it: not what is compared
    checked, _ = make_node(provider, name="new")
    trusted, _ = make_node(provider, name="old")
    rate(trusted, 0.0)

    def call(node) -> tuple[FrameLease, list[tuple[str, ...]]]:
        with CaptureQueriesContext(connection) as statements:
            delivery = dispatch.lease_create_for_node(node=node)
        shapes = [(q["sql"].split()[0], *sorted(set(re.findall(r'"(\w+)"\.', q["sql"])))) for q in statements]
        return FrameLease.objects.get(pk=delivery.lease_id), shapes

    sampled, sampled_statements = call(checked)
    unsampled, unsampled_statements = call(trusted)
    assert sampled.sampled is True and unsampled.sampled is False
    assert sampled_statements == unsampled_statements and len(sampled_statements) > 2
    assert asked == ["samples_prepare"] * 3
    assert not LeaseSample.objects.filter(render_lease__in=[sampled, unsampled]).exists()  # after the call
    assert services.samples_prepare() == 2 and services.samples_prepare() == 0  # the first node's is sampled too
    assert set(LeaseSample.objects.values_list("render_lease__node", flat=True)) == {first.pk, checked.pk}


def test_the_check_is_the_one_drawn_at_the_lease_whatever_the_rate_at_the_report(funded_artist, provider, truth):
    make_queued_job(funded_artist, frames=2)
    node, _ = make_node(provider)
    rate(node, 0.0)
    unsampled = lease_and_report(node, truth)  # drawn at rate 0: not checked...
    check = FrameCheck.objects.get(render_lease=unsampled)
    assert check.state == FrameCheck.State.SKIPPED and Frame.objects.get(pk=unsampled.frame_id).state == "settled"

    rate(node, 1.0)  # ... and one drawn at rate 1 is checked, with the crops chosen then, though the rate fell
    delivery = dispatch.lease_create_for_node(node=node)
    rate(node, 0.0)
    sampled = report(node, delivery, truth)
    check = FrameCheck.objects.get(render_lease=sampled)
    assert sampled.sampled is True and check.kind == FrameCheck.Kind.CROPS
    assert check.state == FrameCheck.State.PASSED and check.check_rate == 0.0
    chosen = LeaseSample.objects.get(render_lease=sampled).crops
    assert sorted(map(str, check.crops.values_list("crop", flat=True))) == sorted(map(str, chosen))


def test_a_lease_not_sampled_is_drawn_again_when_the_nodes_rate_went_up_since(
    funded_artist, provider, truth, monkeypatch
):
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider)
    rate(node, 0.0)
    delivery = dispatch.lease_create_for_node(node=node)
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    assert lease.sampled is False
    # A failed check on another frame: the node's rate goes back to 1, and this lease was drawn at 0.
    trust = services.trust_record(node_id=node.pk, passed=False, reason="a failed check elsewhere")
    assert trust.check_rate == 1.0 and trust.raised_at >= lease.created_at
    draws = []
    real = services._chance
    monkeypatch.setattr(services, "_chance", lambda r: draws.append(r) or real(r))
    report(node, delivery, truth)
    assert draws == [1.0]  # drawn again, at the new rate
    assert FrameCheck.objects.get(render_lease=lease).kind == FrameCheck.Kind.CROPS


def test_references_rendered_while_the_node_renders_decide_the_check_at_the_report(
    platform_truth, funded_artist, provider, truth, monkeypatch
):
    monkeypatch.setattr(conf, "REFERENCES_AHEAD", True)
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider)
    with CaptureQueriesContext(connection) as statements:
        delivery = dispatch.lease_create_for_node(node=node)  # inline: the references are rendered at the commit
    # Neither the lease nor the references read the scene's inspection report (a production scene's is large).
    assert not [q["sql"] for q in statements.captured_queries if '"scenes_scene"."report"' in q["sql"]]
    sample = LeaseSample.objects.get(render_lease_id=delivery.lease_id)
    assert len(platform_truth.renders) == policy.CROPS_PER_CHECK and all(sample.references)
    assert services.references_render(lease_id=delivery.lease_id) == 0  # all there: nothing rendered again

    decoded, reads, decode, read = [], [], services.image_from_bytes, services._bytes_checked
    monkeypatch.setattr(services, "image_from_bytes", lambda b, size: decoded.append(size) or decode(b, size=size))
    monkeypatch.setattr(services, "_bytes_checked", lambda key: reads.append(key) or read(key))
    services._candidates.clear()
    lease = report(node, delivery, truth)
    check = FrameCheck.objects.get(render_lease=lease)
    assert check.state == FrameCheck.State.PASSED
    # The candidate frame is decoded once for the check's 8 crops, and its bytes checked for each of them.
    assert decoded.count((32, 24)) == 1 and reads.count(lease.result_key) == policy.CROPS_PER_CHECK
    assert sorted(check.crops.values_list("reference_key", flat=True)) == sorted(sample.references)
    assert {c.verifier for c in check.crops.all()} == {CropCheck.Verifier.PLATFORM}
    assert len(platform_truth.renders) == policy.CROPS_PER_CHECK  # the report rendered nothing

    # A cheat whose lease was sampled fails on the references made before it reported.
    cheat_job = make_queued_job(funded_artist, frames=1)
    cheat = lease_and_report(node, truth_image(seed=5))
    assert FrameCheck.objects.get(render_lease=cheat).state == FrameCheck.State.FAILED
    assert len(platform_truth.renders) == 2 * policy.CROPS_PER_CHECK
    assert Frame.objects.get(job=cheat_job).state == FrameState.QUEUED


def test_a_crop_whose_reference_is_not_rendered_yet_is_rendered_after_the_report(
    platform_truth, funded_artist, provider, truth
):
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider)
    delivery = dispatch.lease_create_for_node(node=node)  # references not rendered (REFERENCES_AHEAD off)
    lease = report(node, delivery, truth)
    assert FrameCheck.objects.get(render_lease=lease).state == FrameCheck.State.PASSED
    assert len(platform_truth.renders) == policy.CROPS_PER_CHECK


def test_no_references_ahead_for_a_lease_that_ended_or_when_another_provider_can_verify(
    platform_truth, funded_artist, provider, truth, monkeypatch
):
    make_queued_job(funded_artist, frames=2)
    node, _ = make_node(provider, name="rig")
    ended = dispatch.lease_create_for_node(node=node)
    FrameLease.objects.filter(pk=ended.lease_id).update(state=FrameLease.State.REVOKED)
    assert services.references_render(lease_id=ended.lease_id) == 0 and platform_truth.renders == []

    # Another provider's idle node will verify the crops after the report: the platform renders none ahead,
    # and the crops go to that node then (never before the result is committed).
    verifier, _ = make_node(other_provider(), name="checker")
    monkeypatch.setattr(conf, "REFERENCES_AHEAD", True)
    second, _ = make_node(provider, name="rig2")
    delivery = dispatch.lease_create_for_node(node=second)
    assert LeaseSample.objects.get(render_lease_id=delivery.lease_id).references == [] and platform_truth.renders == []
    lease = report(second, delivery, truth)
    # After the report, the platform renders the crops the other provider's node does not take.
    assert len(platform_truth.renders) == policy.CROPS_PER_CHECK - 1
    check = FrameCheck.objects.get(render_lease=lease)
    assert check.crops.filter(verifier=CropCheck.Verifier.NODE).count() == 1
    verify_and_report(verifier, truth)
    assert FrameCheck.objects.get(render_lease=lease).state == FrameCheck.State.PASSED


def test_draws_at_the_lease_switched_off_leave_the_draw_to_the_report(funded_artist, provider, truth, monkeypatch):
    monkeypatch.setattr(conf, "SAMPLE_AT_LEASE", False)
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider)
    lease = lease_and_report(node, truth)
    assert lease.sampled is None and not LeaseSample.objects.exists()
    assert FrameCheck.objects.get(render_lease=lease).state == FrameCheck.State.PASSED  # rate 1: drawn, checked


def test_the_draw_at_the_lease_samples_at_the_nodes_rate_and_skips_canaries_and_tiny_frames():
    trusted = SimpleNamespace(trust=SimpleNamespace(check_rate=0.1))
    frame = SimpleNamespace(job=SimpleNamespace(is_canary=False))
    manifest = {"resolution_x": 32, "resolution_y": 24}
    draws = [services.lease_sampled(node=trusted, frame=frame, manifest=manifest) for _ in range(20_000)]
    assert set(draws) == {True, False}
    assert abs(sum(draws) - 2_000) < 4 * 43  # binomial(20,000, 0.1): sigma 42.4
    canary = SimpleNamespace(job=SimpleNamespace(is_canary=True))
    assert services.lease_sampled(node=trusted, frame=canary, manifest=manifest) is None  # its answer checks it
    tiny = {"resolution_x": 8, "resolution_y": 8}
    assert services.lease_sampled(node=trusted, frame=frame, manifest=tiny) is None  # the report says why
