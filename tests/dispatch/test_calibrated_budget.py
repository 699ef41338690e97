"""A frame that renders far past its calibrated compute is stopped and failed as "slower than calibrated"
(issue 11): not paid at a price computed for a lighter frame, not retried node after node."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.dispatch import services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import pricing
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import LedgerTransaction
from marketplace.nodes.models import WorkerNode
from tests.dispatch.test_agent_api import agent, take
from tests.fixtures.market import make_node, make_queued_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]


@pytest.fixture
def manual_matching(monkeypatch):
    monkeypatch.setattr(services, "_after_commit_match", lambda: None)


def priced_job(owner, settings, *, frames: int = 1) -> Job:
    """A queued job whose quote is the compute price of a 32x24, 8-sample frame that takes 2 s on the reference."""
    settings.JOBS_REFERENCE_BENCH_SCORE = 1000.0
    settings.JOBS_SLOWER_THAN_CALIBRATED_FACTOR = 3.0
    settings.JOBS_SLOWER_THAN_CALIBRATED_MIN_SECONDS = 1.0
    cal = pricing.calibration_from_report(
        {
            "calibration": {
                "seconds": 2.0,
                "width": 32,
                "height": 24,
                "samples": 8,
                "overhead_seconds": 0.5,
                "load_seconds": 1.0,
                "bench_score": 1000.0,
            }
        }
    )
    quote = pricing.quote_for(frames=frames, width=32, height=24, samples=8, calibration=cal, idle_scores=[])
    job = make_queued_job(owner, frames=frames, price=quote.price_per_frame)
    Job.objects.filter(pk=job.pk).update(quote=quote.as_json())
    return job


def leased(provider, *, bench_score: float, name: str = "rig"):
    node, token = make_node(provider, name=name, unchecked=True)
    WorkerNode.objects.filter(pk=node.pk).update(bench_score=bench_score)
    assert services.match_frames() == 1
    return node, token, take(node)


def test_a_render_lease_carries_its_budget_on_the_nodes_measured_speed(
    funded_artist, provider, settings, manual_matching
):
    priced_job(funded_artist, settings, frames=2)
    _, _, slow = leased(provider, bench_score=1000.0, name="slow")
    _, _, fast = leased(provider, bench_score=3000.0, name="fast")
    budgets = {
        m["lease"]: FrameLease.objects.get(pk=m["lease"]).manifest["calibrated_budget_seconds"] for m in (slow, fast)
    }
    # 3 x (0.5 s overhead + 1.5 s of per-unit work at the node's speed) + 1 s load.
    assert budgets[slow["lease"]] == pytest.approx(3 * 2.0 + 1.0)
    assert budgets[fast["lease"]] == pytest.approx(3 * (0.5 + 0.5) + 1.0)


def test_a_frame_past_its_budget_fails_at_once_with_that_reason_and_pays_nothing(
    funded_artist, provider, settings, manual_matching
):
    job = priced_job(funded_artist, settings)
    _, token, msg = leased(provider, bench_score=1000.0)
    # The agent stopped it at the budget: the lease has lasted that long.
    FrameLease.objects.filter(pk=msg["lease"]).update(created_at=timezone.now() - timedelta(seconds=8))
    error = "SlowerThanCalibrated: slower than calibrated: stopped after 7 s, the lease's budget"
    r = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/",
        {"token": msg["token"], "ok": False, "error": error},
        format="json",
    )
    assert r.status_code == 422
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.FAILED  # after one node, not three
    assert "slower than calibrated" in frame.last_error and "get a new quote" in frame.last_error
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="settle:").exists()
    assert services.match_frames() == 0  # not retried on another node


def test_a_node_cannot_fail_a_frame_at_once_by_merely_claiming_it_was_slow(
    funded_artist, provider, settings, manual_matching
):
    job = priced_job(funded_artist, settings)
    _, token, msg = leased(provider, bench_score=1000.0)
    r = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/",
        {"token": msg["token"], "ok": False, "error": "slower than calibrated: trust me"},
        format="json",
    )
    assert r.status_code == 422
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.QUEUED  # an ordinary failure: requeued for another node
