"""frame_settle under real concurrency: many threads settle one frame, on separate Postgres connections."""

import pytest

from marketplace.jobs.models import Frame
from marketplace.jobs.services import frame_settle
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.ledger.models import Account, LedgerTransaction
from marketplace.ledger.services import account_get
from tests.fixtures.market import make_queued_job
from tests.fixtures.race import race
from tests.jobs.conftest import M, rendered

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 8


def test_eight_threads_settling_one_frame_pay_it_once(funded_artist, provider, node):
    job = make_queued_job(funded_artist, frames=2, price=3 * M)
    frame = rendered(job.frames.get(number=1), node)
    results = race(lambda i: frame_settle(frame_id=frame.pk, node_id=node.pk), THREADS)
    assert results.count(True) == 1 and results.count(False) == THREADS - 1, results
    assert Frame.objects.get(pk=frame.pk).settle_count == 1
    assert LedgerTransaction.objects.filter(idempotency_key__startswith=f"settle:frame:{frame.pk}").count() == 1
    pending = account_get(kind=Account.Kind.PROVIDER_PENDING, owner=provider)
    revenue = account_get(kind=Account.Kind.PLATFORM_REVENUE)
    assert ledger.account_balance(account=pending) + ledger.account_balance(account=revenue) == 3 * M
    assert ledger.user_escrow_total(user=funded_artist) == 3 * M
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []


def test_racing_settlements_of_every_frame_finish_the_job_once(funded_artist, node):
    job = make_queued_job(funded_artist, frames=THREADS, price=M)
    frames = [rendered(f, node) for f in job.frames.order_by("number")]
    results = race(lambda i: frame_settle(frame_id=frames[i].pk, node_id=node.pk), THREADS)
    assert results == [True] * THREADS
    job.refresh_from_db()
    assert job.state == JobState.DONE and job.finish_count == 0  # nothing was left to refund
    assert set(job.frames.values_list("state", flat=True)) == {FrameState.SETTLED}
    assert ledger.user_escrow_total(user=funded_artist) == 0
    assert ledger.ledger_total() == 0 and ledger.ledger_drift() == []
