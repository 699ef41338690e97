"""An artist retries a job's failed frames: they go back to the queue, their earlier failures stop counting,
and a finished job holds their price in escrow again (exactly, all or nothing)."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from marketplace.dispatch import services as dispatch
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.services import (
    FundsInsufficient,
    JobNotFound,
    JobRefused,
    job_cancel,
    job_finish_if_complete,
    job_retry_failed,
)
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import LedgerTransaction
from tests.fixtures.api import bearer
from tests.fixtures.market import make_node, make_queued_job
from tests.fixtures.money import fund
from tests.fixtures.personas import PASSWORD
from tests.verification.helpers import take

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]
PRICE = 2_000_000


@pytest.fixture(autouse=True)
def manual_matching(monkeypatch):
    """Matching runs only when a test leases explicitly."""
    monkeypatch.setattr(dispatch, "_after_commit_match", lambda: None)


def fail_on(provider, *, nodes: int, prefix: str = "n") -> None:
    """`nodes` new nodes each take the job's next frame and report a failure through the agent API path."""
    for i in range(nodes):
        node, _ = make_node(provider, name=f"{prefix}{i}", unchecked=True)
        delivery = dispatch.lease_create_for_node(node=node)
        assert delivery is not None
        take(node)
        lease = dispatch.FrameLease.objects.get(pk=delivery.lease_id)
        outcome = dispatch.lease_report(
            node=node, lease_id=lease.pk, token=delivery.token, ok=False, error=f"out of memory on {prefix}{i}"
        )
        assert not outcome.accepted
        node.status = "paused"  # out of the way of the next node
        node.save(update_fields=["status"])


def test_a_failed_frame_of_a_running_job_is_queued_again_without_a_new_hold(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=2, price=PRICE)
    fail_on(provider, nodes=3)
    failed = Frame.objects.get(job=job, state=FrameState.FAILED)
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING  # frame 2 is still queued
    escrow, wallet = ledger.user_escrow_total(user=funded_artist), ledger.user_balances(user=funded_artist)

    outcome = job_retry_failed(job_id=job.pk, owner=funded_artist)

    failed.refresh_from_db()
    assert (outcome.frames_requeued, outcome.held) == (1, 0)
    assert failed.state == FrameState.QUEUED and failed.attempts == 0 and failed.last_error == ""
    assert failed.retried_at is not None
    assert ledger.user_escrow_total(user=funded_artist) == escrow == 2 * PRICE  # still held since acceptance
    assert ledger.user_balances(user=funded_artist) == wallet


def test_earlier_failures_no_longer_count_after_a_retry(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=1, price=PRICE)
    fail_on(provider, nodes=3)
    job_retry_failed(job_id=job.pk, owner=funded_artist)
    fail_on(provider, nodes=1, prefix="m")  # a fourth node fails it once more
    frame = Frame.objects.get(job=job)
    assert frame.state == FrameState.QUEUED  # one failure since the retry, not four
    fail_on(provider, nodes=2, prefix="k")
    frame.refresh_from_db()
    assert frame.state == FrameState.FAILED and "out of memory on k1" in frame.last_error
    assert "out of memory on n0" not in frame.last_error  # the errors shown are those since the retry


def test_a_failed_job_holds_the_retried_frames_price_again(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=1, price=PRICE)
    fail_on(provider, nodes=3)
    job_finish_if_complete(job_id=job.pk)
    job.refresh_from_db()
    assert job.state == JobState.FAILED and ledger.user_escrow_total(user=funded_artist) == 0  # refunded
    wallet = ledger.user_balances(user=funded_artist)["artist_wallet"]

    outcome = job_retry_failed(job_id=job.pk, owner=funded_artist)

    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.finished_at is None and job.retries == 1
    assert outcome.held == PRICE and ledger.user_escrow_total(user=funded_artist) == PRICE
    assert ledger.user_balances(user=funded_artist)["artist_wallet"] == wallet - PRICE
    assert LedgerTransaction.objects.filter(idempotency_key=f"hold:job:{job.pk}:retry:1").count() == 1
    assert ledger.ledger_total() == 0


def test_a_retry_without_the_funds_changes_nothing(artist, provider):
    fund(artist, PRICE)
    job = make_queued_job(artist, frames=1, price=PRICE)
    fail_on(provider, nodes=3)
    job_finish_if_complete(job_id=job.pk)  # the price goes back to the wallet ...
    make_queued_job(artist, frames=1, price=PRICE)  # ... and is spent on another job before the retry
    with pytest.raises(FundsInsufficient, match=r"retrying needs 2\.00 tokens in your wallet"):
        job_retry_failed(job_id=job.pk, owner=artist)
    assert Job.objects.get(pk=job.pk).state == JobState.FAILED
    assert Frame.objects.get(job=job).state == FrameState.FAILED
    assert ledger.user_balances(user=artist)["artist_wallet"] == 0 and Job.objects.get(pk=job.pk).retries == 0


def test_nothing_to_retry_or_someone_elses_job_is_refused(funded_artist, outsider, provider):
    job = make_queued_job(funded_artist, frames=1, price=PRICE)
    with pytest.raises(JobRefused, match="no failed frames"):
        job_retry_failed(job_id=job.pk, owner=funded_artist)
    fail_on(provider, nodes=3)
    with pytest.raises(JobNotFound):
        job_retry_failed(job_id=job.pk, owner=outsider)
    assert Frame.objects.get(job=job).state == FrameState.FAILED


def test_a_cancelled_jobs_failed_frames_stay_failed(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=2, price=PRICE)
    fail_on(provider, nodes=3)
    job_cancel(job_id=job.pk, owner=funded_artist)
    with pytest.raises(JobRefused, match="a cancelled job has no failed frames to retry"):
        job_retry_failed(job_id=job.pk, owner=funded_artist)


def test_the_page_and_the_api_retry_failed_frames(client, funded_artist, provider):
    job = make_queued_job(funded_artist, frames=2, price=PRICE)
    fail_on(provider, nodes=3)
    client.login(username=funded_artist.username, password=PASSWORD)
    page = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'id="retry-failed"' in page and "Retry 1 failed frame" in page
    page = client.post(reverse("jobs:retry_failed", args=[job.pk]), follow=True).content.decode()
    assert "1 failed frame sent back to the queue." in page
    assert not Frame.objects.filter(job=job, state=FrameState.FAILED).exists()

    fail_on(provider, nodes=3, prefix="m")
    response = bearer(funded_artist).post(f"/api/v1/jobs/{job.pk}/retry-failed/")
    assert response.status_code == 200 and response.json()["frames_requeued"] == 1
    again = bearer(funded_artist).post(f"/api/v1/jobs/{job.pk}/retry-failed/")
    assert again.status_code == 400 and "no failed frames" in again.json()["detail"]
    assert APIClient().post(f"/api/v1/jobs/{job.pk}/retry-failed/").status_code in (401, 403)


def test_retries_of_failed_frames_are_capped_per_job(funded_artist, provider, settings):
    settings.JOBS_MAX_RETRIES = 2
    job = make_queued_job(funded_artist, frames=1, price=PRICE)
    for attempt in range(2):
        fail_on(provider, nodes=3, prefix=f"try{attempt}-")
        assert job_retry_failed(job_id=job.pk, owner=funded_artist).frames_requeued == 1
    fail_on(provider, nodes=3, prefix="last-")
    escrow, wallet = ledger.user_escrow_total(user=funded_artist), ledger.user_balances(user=funded_artist)

    with pytest.raises(JobRefused, match="retried 2 times already, the most a job allows"):
        job_retry_failed(job_id=job.pk, owner=funded_artist)
    response = bearer(funded_artist).post(f"/api/v1/jobs/{job.pk}/retry-failed/")
    assert response.status_code == 400 and "retried 2 times" in response.json()["detail"]

    # Nothing moved: the frame stays failed, the count and the money are untouched.
    assert Frame.objects.get(job=job).state == FrameState.FAILED
    assert Job.objects.get(pk=job.pk).retries == 2
    assert ledger.user_escrow_total(user=funded_artist) == escrow
    assert ledger.user_balances(user=funded_artist) == wallet
