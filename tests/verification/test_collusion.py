"""Collusion: two provider accounts of one cheat, one renders a wrong frame and the other vouches for it.

The platform re-renders a share of the crops that another provider's node verified as matching
(policy.AUDIT_SHARE); a verifier caught agreeing with a cheat is failed like the cheat. Real Postgres, the
real agent queues and lease/report path; the platform's render is `platform_truth` (see conftest).
"""

import pytest

from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import LedgerTransaction
from marketplace.verification import policy
from marketplace.verification.models import CropCheck, FrameCheck, NodeTrust, TrustEvent
from tests.fixtures.market import make_node, make_queued_job
from tests.verification.helpers import lease_and_report, other_provider, truth_image, verify_and_report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("agent_queues", "crop_leases_in_comparable_format", "manual_matching"),
]


def settlements(frame) -> int:
    return LedgerTransaction.objects.filter(idempotency_key=f"settle:frame:{frame.pk}").count()


def accomplices(count: int):
    """`count` trusted idle nodes of a second provider account: enough to take every crop of a check."""
    owner = other_provider("mallory")
    return [make_node(owner, name=f"accomplice{i}", unchecked=True)[0] for i in range(count)]


def test_a_colluding_verifier_is_caught_by_the_platform_audit_and_failed_like_the_cheat(
    funded_artist, provider, truth, settings
):
    settings.VERIFICATION_AUDIT_SHARE = 1.0  # every node-verified crop is audited (default: policy.AUDIT_SHARE)
    job = make_queued_job(funded_artist, frames=1, price=2_000_000, width=32, height=24)
    cheat, _ = make_node(provider, name="cheat")
    helpers = accomplices(policy.CROPS_PER_CHECK)
    forged = truth_image(seed=99)  # the cheat's frame: right size, wrong everywhere

    lease = lease_and_report(cheat, forged)
    check = FrameCheck.objects.get(render_lease=lease)
    assert check.crops.filter(verifier=CropCheck.Verifier.NODE).count() == policy.CROPS_PER_CHECK
    for node in helpers:  # every crop went to the accomplice account, and each vouches for the forgery
        verify_and_report(node, forged)

    frame = Frame.objects.get(job=job)
    check.refresh_from_db()
    assert check.state == FrameCheck.State.FAILED
    assert frame.state == FrameState.QUEUED and settlements(frame) == 0  # nobody is paid for the forgery
    assert all(c.verifier == CropCheck.Verifier.PLATFORM and c.node_verdict.get("agreed") for c in check.crops.all())
    assert NodeTrust.objects.get(node=cheat).checks_failed == 1
    for node in helpers:
        trust = NodeTrust.objects.get(node=node)
        assert (trust.checks_failed, trust.consecutive_passes) == (1, 0)
        event = TrustEvent.objects.get(node=node, kind=TrustEvent.Kind.FAIL)
        assert "audit" in event.reason and event.frame_id == frame.pk


def test_an_honest_verifier_passes_the_audit_and_the_frame_is_paid_once(
    funded_artist, provider, truth, platform_truth, settings
):
    settings.VERIFICATION_AUDIT_SHARE = 1.0
    job = make_queued_job(funded_artist, frames=1, price=2_000_000, width=32, height=24)
    node, _ = make_node(provider, name="honest")
    verifier = accomplices(1)[0]

    lease_and_report(node, truth)
    verify_and_report(verifier, truth)

    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.SETTLED and settlements(frame) == 1
    assert len(platform_truth.renders) == policy.CROPS_PER_CHECK  # the vouched crop was rendered again too
    trust = NodeTrust.objects.get(node=verifier)
    assert trust.checks_failed == 0
    assert not TrustEvent.objects.filter(node=verifier).exists()


def test_the_default_audit_share_is_the_policys(settings):
    assert policy.audit_share() == policy.AUDIT_SHARE == 0.10
    settings.VERIFICATION_AUDIT_SHARE = 0.25
    assert policy.audit_share() == 0.25
