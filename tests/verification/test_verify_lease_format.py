"""A verify lease that asked for another format than the comparison needs (e.g. EXR for a PNG frame): the
verifier rendered what it was asked for, so its crop is redone by the platform and it keeps its trust."""

import pytest

from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.verification.models import CropCheck, TrustEvent
from tests.fixtures.market import make_node, make_queued_job
from tests.verification.helpers import lease_and_report, other_provider, truth_image, verify_and_report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("agent_queues", "crop_leases_in_comparable_format"),
]


def test_a_crop_leased_in_another_format_is_redone_by_the_platform_without_blame(
    funded_artist, provider, platform_truth, monkeypatch
):
    monkeypatch.setattr(dispatch, "_after_commit_match", lambda: None)
    platform_truth.image = truth_image()
    job = make_queued_job(funded_artist, frames=1, width=32, height=24)
    node, _ = make_node(provider)
    verifier, _ = make_node(other_provider(), name="checker")
    lease_and_report(node, platform_truth.image)
    verify = FrameLease.objects.get(node=verifier)
    FrameLease.objects.filter(pk=verify.pk).update(manifest={**verify.manifest, "file_format": "OPEN_EXR"})

    verify_and_report(verifier, platform_truth.image, tamper=lambda crop: crop // 2)  # "linear" values
    crop = CropCheck.objects.get(verify_lease=verify)
    assert crop.state == CropCheck.State.PASSED and crop.verifier == CropCheck.Verifier.PLATFORM
    assert "asked for OPEN_EXR" in crop.node_verdict["error"] and "node" not in crop.node_verdict
    assert Frame.objects.get(job=job).state == FrameState.SETTLED
    assert not TrustEvent.objects.filter(node=verifier).exists()
