"""Maturation at scale (Postgres): it neither waits for a frame another transaction holds nor reads the history."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace.jobs.models import Frame
from marketplace.ledger.models import Account
from marketplace.ledger.services import account_get, fee_for
from marketplace.payments.earnings import earnings_mature
from marketplace.payments.models import EarningMaturation
from marketplace.payments.selectors import frames_due_to_mature
from tests.fixtures.plans import generic_plan
from tests.payments.helpers import M, available, pending, settled_frame

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PRICE = 10 * M
SHARE = PRICE - fee_for(PRICE)


def old(hours: float = 80):
    return timezone.now() - timedelta(hours=hours)


def test_a_frame_another_transaction_holds_is_left_for_the_next_run_without_waiting(artist, provider):
    held, free = (settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=old()) for _ in range(2))
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # what dispute_open does while it decides
        try:
            with transaction.atomic():
                list(Frame.objects.select_for_update(no_key=True).filter(pk=held.pk))
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        assert earnings_mature() == 1
        assert time.monotonic() - started < 5  # did not wait for the holder's 10 s
        assert list(EarningMaturation.objects.values_list("frame_id", flat=True)) == [free.pk]
    finally:
        release.set()
        holder.join()
    assert earnings_mature() == 1  # the next run takes it
    assert available(provider) == 2 * SHARE and pending(provider) == 0


def test_a_runs_statements_do_not_grow_with_the_frames_it_matures(artist, provider):
    """One ledger statement for the whole batch (on SQLite, `make run`'s database, the ledger writes row by row)."""
    account_get(kind=Account.Kind.PROVIDER_AVAILABLE, owner=provider)  # created on first use: not what is counted
    counts = []
    for n in (2, 12):
        for _ in range(n):
            settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=old())
        with CaptureQueriesContext(connection) as run:
            assert earnings_mature() == n
        counts.append(len(run.captured_queries))
    assert counts[0] == counts[1], counts
    assert available(provider) == 14 * SHARE


def test_the_due_frames_are_read_from_the_partial_index_of_frames_still_owed(artist, provider):
    owed = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=old())
    matured_at = timezone.now() - timedelta(hours=1)
    Frame.objects.bulk_create(  # a history: settled frames whose pay matured long ago
        Frame(
            job=owed.job,
            number=n,
            price=PRICE,
            state="settled",
            node=owed.node,
            settled_at=old(),
            pay_matured_at=matured_at,
        )
        for n in range(2, 3002)
    )
    with connection.cursor() as cur:
        cur.execute("ANALYZE jobs_frame")
    sql, params = frames_due_to_mature(cutoff=timezone.now())[:500].query.sql_with_params()
    plan = generic_plan(sql, list(params))  # the plan a prepared statement settles on, knowing no value
    assert "frame_pay_pending" in plan, plan


def test_the_migration_marks_the_frames_whose_pay_matured_before_it(artist, provider):
    matured = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=old())
    assert earnings_mature() == 1
    owed = settled_frame(artist=artist, provider=provider, price=PRICE, settled_at=old(1))
    at = EarningMaturation.objects.get(frame=matured).matured_at
    executor = MigrationExecutor(connection)
    executor.migrate([("jobs", "0008_leased_count")])  # back to before the column: its values are gone
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert dict(Frame.objects.values_list("pk", "pay_matured_at")) == {matured.pk: at, owed.pk: None}
