"""Verification services through the real lease/report path (Redis agent queues, eager Celery tasks).

The platform verifier is replaced by `platform_truth` here (it returns crops of the true image); the real
sandboxed render is tested in test_platform.py.
"""

import io
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from marketplace import blobs
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.selectors import account_balance
from marketplace.ledger.services import account_get, fee_for
from marketplace.nodes.selectors import node_is_banned
from marketplace.verification import policy, selectors, services
from marketplace.verification.models import CropCheck, FrameCheck, NodeTrust, TrustEvent
from tests.fixtures.market import make_node, make_queued_job
from tests.verification.helpers import lease_and_report, other_provider, png, take, truth_image, verify_and_report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("agent_queues", "crop_leases_in_comparable_format"),
]
PRICE = 2_000_000


def pending(user) -> int:
    return account_balance(account=account_get(kind=Account.Kind.PROVIDER_PENDING, owner=user))


def wallet(user) -> int:
    return account_balance(account=account_get(kind=Account.Kind.ARTIST_WALLET, owner=user))


def settlements(frame) -> int:
    return LedgerTransaction.objects.filter(idempotency_key=f"settle:frame:{frame.pk}").count()


def wrong(image: np.ndarray) -> np.ndarray:
    """A cheat's frame: right size, wrong everywhere."""
    return truth_image(seed=99, width=image.shape[1], height=image.shape[0])


def test_a_checked_frame_is_paid_only_after_every_crop_matches(funded_artist, provider, truth, manual_matching):
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    node, _ = make_node(provider, name="rig")
    verifier, _ = make_node(other_provider(), name="checker")
    lease = lease_and_report(node, truth)

    frame = Frame.objects.get(job=job)
    check = FrameCheck.objects.get(render_lease=lease)
    assert frame.state == FrameState.VERIFYING and check.state == FrameCheck.State.PENDING
    assert pending(provider) == 0 and settlements(frame) == 0
    crops = list(check.crops.order_by("pk"))
    assert len(crops) == policy.CROPS_PER_CHECK
    on_node = [c for c in crops if c.verifier == CropCheck.Verifier.NODE]
    assert len(on_node) == 1 and on_node[0].verify_lease.node_id == verifier.pk  # one idle verifier node
    assert all(c.state == CropCheck.State.PASSED for c in crops if c.verifier == CropCheck.Verifier.PLATFORM)

    verify_and_report(verifier, truth)

    frame.refresh_from_db()
    check.refresh_from_db()
    assert frame.state == FrameState.SETTLED and frame.node_id == node.pk
    assert check.state == FrameCheck.State.PASSED
    assert pending(provider) == PRICE - fee_for(PRICE) and settlements(frame) == 1
    trust = NodeTrust.objects.get(node=node)
    assert (trust.consecutive_passes, trust.checks_passed, trust.checks_failed) == (1, 1, 0)
    evidence = selectors.crop_evidence(frame_id=frame.pk, result_key=lease.result_key)
    assert len(evidence) == policy.CROPS_PER_CHECK and all(c.reference_key for c in evidence)


def test_crops_are_chosen_after_the_report_and_differ_between_frames(funded_artist, provider, truth, manual_matching):
    make_queued_job(funded_artist, frames=6, price=PRICE, width=32, height=24)
    node, _ = make_node(provider)
    leases = [lease_and_report(node, truth) for _ in range(6)]
    crop_sets = [
        tuple(sorted(map(str, FrameCheck.objects.get(render_lease=lease).crops.values_list("crop", flat=True))))
        for lease in leases
    ]
    assert len(set(crop_sets)) == 6
    for lease in leases:
        # The node's lease and message never carried a crop: they were drawn when the result came in.
        assert lease.crop is None and lease.manifest["border"] is None
        assert FrameCheck.objects.get(render_lease=lease).created_at >= lease.finished_at


def test_a_wrong_frame_is_requeued_unpaid_and_its_node_distrusted(funded_artist, provider, truth, manual_matching):
    wallet_before = wallet(funded_artist)
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    cheat, _ = make_node(provider, name="cheat")
    lease_and_report(cheat, wrong(truth))

    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.QUEUED and frame.node_id is None and frame.result_key == ""
    assert "verification failed" in frame.last_error and "SSIM" in frame.last_error
    assert settlements(frame) == 0 and pending(provider) == 0
    trust = NodeTrust.objects.get(node=cheat)
    assert (trust.consecutive_passes, trust.checks_failed, trust.check_rate) == (0, 1, 1.0)
    event = TrustEvent.objects.get(node=cheat)
    assert event.kind == TrustEvent.Kind.FAIL and event.frame_id == frame.pk and "SSIM" in event.reason
    assert dispatch.lease_create_for_node(node=cheat) is None  # it gets no more frames of this job

    honest_provider = other_provider("ivy")
    honest, _ = make_node(honest_provider, name="honest")
    verifier, _ = make_node(other_provider("zed"), name="verifier")
    lease_and_report(honest, truth)
    assert not FrameLease.objects.filter(node=cheat, kind="verify").exists()  # a distrusted node verifies nothing
    verify_and_report(verifier, truth)
    frame.refresh_from_db()
    assert frame.state == FrameState.SETTLED and frame.node_id == honest.pk
    assert pending(honest_provider) == PRICE - fee_for(PRICE) and pending(provider) == 0
    assert settlements(frame) == 1
    assert wallet(funded_artist) == wallet_before - PRICE  # charged once, for the honest render


def test_a_node_is_banned_after_repeated_failures_and_gets_no_more_frames(
    funded_artist, provider, truth, manual_matching
):
    for _ in range(policy.BAN_AFTER_FAILURES):
        make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    cheat, _ = make_node(provider, name="cheat")
    for _ in range(policy.BAN_AFTER_FAILURES):
        lease_and_report(cheat, wrong(truth))
    assert NodeTrust.objects.get(node=cheat).checks_failed == policy.BAN_AFTER_FAILURES
    assert node_is_banned(node_id=cheat.pk)
    assert TrustEvent.objects.filter(node=cheat, kind=TrustEvent.Kind.BAN).count() == 1
    assert not dispatch.matchable_nodes().filter(pk=cheat.pk).exists()
    assert dispatch.lease_create_for_node(node=cheat) is None
    assert Frame.objects.filter(state=FrameState.QUEUED).count() == policy.BAN_AFTER_FAILURES


def test_a_duplicated_crop_report_changes_nothing(funded_artist, provider, truth, manual_matching):
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    node, _ = make_node(provider)
    verifier, _ = make_node(other_provider(), name="checker")
    lease_and_report(node, truth)
    verify_lease = verify_and_report(verifier, truth)
    for _ in range(2):
        services.crop_reported(lease_id=verify_lease.pk)
        services.frame_verify_or_settle(frame_id=Frame.objects.get(job=job).pk)
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.SETTLED and settlements(frame) == 1
    assert pending(provider) == PRICE - fee_for(PRICE)
    assert TrustEvent.objects.filter(node=node).count() == 1 and FrameCheck.objects.count() == 1


def test_a_lying_verifier_cannot_cost_an_honest_node_its_pay(funded_artist, provider, truth, manual_matching):
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    node, _ = make_node(provider)
    liar, _ = make_node(other_provider(), name="liar")
    lease_and_report(node, truth)
    verify_lease = verify_and_report(liar, truth, tamper=lambda crop: 255 - crop)

    crop = CropCheck.objects.get(verify_lease=verify_lease)
    assert crop.state == CropCheck.State.PASSED and crop.verifier == CropCheck.Verifier.PLATFORM
    assert crop.node_verdict["node"] == liar.pk and crop.node_verdict["reasons"]
    assert Frame.objects.get(job=job).state == FrameState.SETTLED
    assert pending(provider) == PRICE - fee_for(PRICE)
    event = TrustEvent.objects.get(node=liar)
    assert event.kind == TrustEvent.Kind.FAIL and "disagreed with the platform" in event.reason
    assert NodeTrust.objects.get(node=node).checks_passed == 1


def test_a_cheat_caught_by_a_node_verifier_is_confirmed_by_the_platform(
    funded_artist, provider, truth, manual_matching, platform_truth
):
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    cheat, _ = make_node(provider, name="cheat")
    verifier, _ = make_node(other_provider(), name="checker")
    # Every platform crop of a wholly wrong frame fails at once; the node's crop waits for its verifier.
    lease_and_report(cheat, wrong(truth))
    renders_before = len(platform_truth.renders)
    verify_lease = verify_and_report(verifier, truth)

    crop = CropCheck.objects.get(verify_lease=verify_lease)
    assert len(platform_truth.renders) == renders_before + 1  # the tie-break render
    assert crop.state == CropCheck.State.FAILED and crop.node_verdict["node"] == verifier.pk
    assert Frame.objects.get(job=job).state == FrameState.QUEUED
    assert not TrustEvent.objects.filter(node=verifier).exists()
    assert NodeTrust.objects.get(node=cheat).checks_failed == 1


def test_a_frame_the_sampling_skips_is_paid_and_the_skip_recorded(
    funded_artist, provider, truth, monkeypatch, manual_matching
):
    monkeypatch.setattr(services, "_chance", lambda rate: False)
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    node, _ = make_node(provider)
    lease = lease_and_report(node, truth)
    check = FrameCheck.objects.get(render_lease=lease)
    assert (check.kind, check.state, check.check_rate) == ("skipped", "skipped", 1.0)
    assert "not sampled" in check.reason and not check.crops.exists()
    assert Frame.objects.get(job=job).state == FrameState.SETTLED and pending(provider) == PRICE - fee_for(PRICE)
    assert not TrustEvent.objects.filter(node=node).exists()  # an unchecked frame earns no trust


def test_the_check_rate_decides_how_often_frames_are_sampled(funded_artist, provider, monkeypatch):
    node, _ = make_node(provider)
    NodeTrust.objects.create(node=node, consecutive_passes=40, check_rate=policy.check_rate(consecutive_passes=40))
    rates = []
    monkeypatch.setattr(services, "_chance", lambda rate: rates.append(rate) or False)
    make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    lease_and_report(node, truth_image())
    # two draws at steady trust: matching's canary swap, then the frame's check
    assert rates == [policy.canary_rate(check_rate=policy.FLOOR), policy.FLOOR]


def test_verify_leases_never_go_to_the_same_provider(funded_artist, provider, truth, manual_matching):
    make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    node, _ = make_node(provider, name="rig")
    sibling, _ = make_node(provider, name="rig-2")
    lease = lease_and_report(node, truth)
    assert not FrameLease.objects.filter(node=sibling).exists()
    crops = CropCheck.objects.filter(frame_check__render_lease=lease)
    assert {c.verifier for c in crops} == {CropCheck.Verifier.PLATFORM}


def test_crops_of_a_vanished_verifier_go_to_the_platform(funded_artist, provider, truth, manual_matching):
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    node, _ = make_node(provider)
    verifier, _ = make_node(other_provider(), name="checker")
    lease_and_report(node, truth)
    assert Frame.objects.get(job=job).state == FrameState.VERIFYING
    dispatch.leases_reap(now=timezone.now() + timedelta(hours=1))  # the verifier never reported
    assert services.checks_resume() == 1
    assert Frame.objects.get(job=job).state == FrameState.SETTLED
    assert not CropCheck.objects.filter(verifier=CropCheck.Verifier.NODE).exists()
    # Its expired lease counts as abandoned (policy.ABANDON_PASSES_LOST), never as a failed check.
    assert list(TrustEvent.objects.filter(node=verifier).values_list("kind", flat=True)) == [TrustEvent.Kind.ABANDONED]
    assert NodeTrust.objects.get(node=verifier).checks_failed == 0


def test_a_lost_crop_report_is_judged_by_the_sweep(funded_artist, provider, truth, manual_matching, monkeypatch):
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    node, _ = make_node(provider)
    verifier, _ = make_node(other_provider(), name="checker")
    lease_and_report(node, truth)
    real_enqueue = dispatch._enqueue
    monkeypatch.setattr(
        dispatch, "_enqueue", lambda name, *a: None if name == "verification.crop_reported" else real_enqueue(name, *a)
    )
    verify_and_report(verifier, truth)
    assert Frame.objects.get(job=job).state == FrameState.VERIFYING
    assert services.checks_resume() == 0  # too recent: the message may still come
    assert services.checks_resume(now=timezone.now() + timedelta(minutes=5)) == 1
    assert Frame.objects.get(job=job).state == FrameState.SETTLED


def test_denoised_frames_are_checked_on_their_noisy_pass(
    funded_artist, provider, truth, platform_truth, manual_matching
):
    job = make_queued_job(funded_artist, frames=2, price=PRICE, width=32, height=24)
    Job.objects.filter(pk=job.pk).update(use_denoising=True)
    node, _ = make_node(provider)
    denoised = (truth // 2 + 60).astype(np.uint8)  # what the artist gets: differs from any crop re-render
    lease = lease_and_report(node, denoised, noisy=truth)
    assert Frame.objects.get(pk=lease.frame_id).state == FrameState.SETTLED
    assert {(m["use_denoising"], m["file_format"]) for m in platform_truth.renders} == {(False, "OPEN_EXR")}

    # No noisy pass uploaded: dispatch refuses the report, so the frame can never reach verification.
    delivery = dispatch.lease_create_for_node(node=node)
    take(node)
    missing = FrameLease.objects.get(pk=delivery.lease_id)
    blobs.blob_put(key=missing.result_key, fileobj=io.BytesIO(png(denoised)))
    outcome = dispatch.lease_report(node=node, lease_id=missing.pk, token=delivery.token, ok=True)
    frame = Frame.objects.get(pk=missing.frame_id)
    assert not outcome.accepted and "pre-denoise pass" in outcome.message
    assert frame.state == FrameState.QUEUED and "pre-denoise pass" in frame.last_error


def test_a_render_too_small_to_compare_is_settled_unchecked(funded_artist, provider, manual_matching, platform_truth):
    make_queued_job(funded_artist, frames=1, price=PRICE, width=6, height=24)
    node, _ = make_node(provider)
    lease = lease_and_report(node, truth_image(width=6))
    check = FrameCheck.objects.get(render_lease=lease)
    assert check.state == FrameCheck.State.SKIPPED and "too small" in check.reason
    assert Frame.objects.get(pk=lease.frame_id).state == FrameState.SETTLED and not platform_truth.renders


def test_a_frame_failing_on_several_nodes_fails_for_good(funded_artist, provider, truth, manual_matching):
    job = make_queued_job(funded_artist, frames=1, price=PRICE, width=32, height=24)
    for i in range(policy.FRAME_FAILED_CHECKS):
        node, _ = make_node(provider, name=f"n{i}")  # one provider: every crop goes to the platform
        lease_and_report(node, wrong(truth))
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.FAILED and "may not render reproducibly" in frame.last_error
    assert settlements(frame) == 0
    assert Job.objects.get(pk=job.pk).state == "failed"  # and the artist's escrow went back
    assert (
        account_balance(account=account_get(kind=Account.Kind.JOB_ESCROW, owner=funded_artist, ref=job.escrow_ref)) == 0
    )
