"""The kept count of each artist's leased frames (`LeasedCount`, kept by triggers on the frame table): it follows
every way a frame enters or leaves LEASED, statement by statement and across concurrent connections, starts
from the frames leased when the migration runs, and is what the matcher ranks artists by."""

import importlib
import threading

import pytest
from django.db import connection, connections, transaction
from django.db.models import Sum

from marketplace.accounts.models import User
from marketplace.dispatch import batch, services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, LeasedCount
from marketplace.jobs.selectors import leased_count_drift
from marketplace.jobs.services import job_cancel
from marketplace.jobs.states import FrameState
from tests.dispatch.test_results_immutable import lease_one, put, report
from tests.fixtures.market import make_node, make_queued_job, png_bytes
from tests.fixtures.money import fund
from tests.fixtures.race import race

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]
MIGRATION = importlib.import_module("marketplace.jobs.migrations.0008_leased_count")


def kept(owner) -> int:
    return LeasedCount.objects.filter(owner=owner).aggregate(n=Sum("frames"))["n"] or 0


def leased(owner) -> int:
    return Frame.objects.filter(job__owner=owner, state=FrameState.LEASED).count()


def assert_kept(*owners) -> None:
    assert leased_count_drift() == {}
    for owner in owners:
        assert kept(owner) == leased(owner)


@pytest.fixture
def second_artist():
    artist = User.objects.create(username="second-artist")
    fund(artist, 10**12)
    return artist


def test_the_count_follows_every_way_into_and_out_of_leased(funded_artist, second_artist, provider):
    first = make_queued_job(funded_artist, frames=8)
    second = make_queued_job(second_artist, frames=3)
    nodes = [make_node(provider, name=f"rig{i}", unchecked=True) for i in range(5)]
    assert kept(funded_artist) == kept(second_artist) == 0

    assert services.match_frames() == 5  # one claim statement for five frames of both artists
    assert kept(funded_artist) == 3 and kept(second_artist) == 2  # the least busy artist first, in turn
    assert_kept(funded_artist, second_artist)

    node, token = nodes[0]
    msg, details = lease_one(node, token)
    assert put(details["upload_url"], png_bytes(32, 24, seed=1)).status_code == 201
    assert report(token, msg).status_code == 200  # LEASED -> RENDERED -> SETTLED (an unchecked node)
    assert FrameLease.objects.get(pk=msg["lease"]).frame.state == FrameState.SETTLED
    assert_kept(funded_artist, second_artist)  # less the frame reported, plus the node's next lease if any

    assert services.node_goodbye(node=nodes[1][0]) == 1  # released: LEASED -> QUEUED
    assert_kept(funded_artist, second_artist)
    assert services.node_ban(node_id=nodes[2][0].pk) == 1  # revoked: LEASED -> QUEUED
    assert_kept(funded_artist, second_artist)

    queued = Frame.objects.filter(job=first, state=FrameState.QUEUED).order_by("pk")
    requeued, failed = lifecycle.frames_lease(frame_ids=list(queued.values_list("pk", flat=True)[:2]))
    assert_kept(funded_artist)
    assert lifecycle.frame_requeue(frame_id=requeued, reason="lease expired")  # LEASED -> QUEUED
    assert_kept(funded_artist)
    assert lifecycle.frame_fail(frame_id=failed, job_id=first.pk, current=FrameState.LEASED, error="too many")
    assert_kept(funded_artist)

    # The cancel below must find leased frames, whichever frames the goodbye and the ban gave back.
    lifecycle.frames_lease(frame_ids=list(second.frames.filter(state=FrameState.QUEUED).values_list("pk", flat=True)))
    assert leased(second_artist) > 0
    job_cancel(job_id=second.pk, owner=second_artist)  # its leased frames -> CANCELLED
    assert kept(second_artist) == 0
    assert_kept(funded_artist, second_artist)

    # Frames written with the state they have already count once, not twice.
    assert Frame.objects.filter(job=first, state=FrameState.LEASED).update(state=FrameState.LEASED) > 0
    assert_kept(funded_artist)


def test_inserts_and_deletes_of_leased_frames_count(funded_artist):
    job = make_queued_job(funded_artist, frames=2)
    Frame.objects.bulk_create(Frame(job=job, number=n, price=1, state=FrameState.LEASED) for n in range(10, 40))
    assert kept(funded_artist) == 30
    Frame.objects.filter(job=job, number__gte=30).delete()
    assert kept(funded_artist) == 20
    assert_kept(funded_artist)


def test_concurrent_connections_count_into_their_own_slots_and_the_sum_holds(funded_artist):
    job = make_queued_job(funded_artist, frames=160)
    ids = list(Frame.objects.filter(job=job).order_by("pk").values_list("pk", flat=True))

    def churn(i: int) -> int:
        mine = ids[i::8]
        for start in range(0, len(mine), 4):
            with transaction.atomic():
                moved = lifecycle.frames_lease(frame_ids=mine[start : start + 4])
                lifecycle.frame_requeue(frame_id=moved[0], count_attempt=False)  # one of them straight back
        return _slot()

    slots = race(churn, 8)
    assert all(isinstance(s, int) for s in slots), slots
    assert kept(funded_artist) == 120 == leased(funded_artist)
    assert set(LeasedCount.objects.filter(owner=funded_artist).values_list("slot", flat=True)) == set(slots)
    assert_kept(funded_artist)


def _slot() -> int:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid() % 16")
        return cur.fetchone()[0]


def test_a_lease_held_open_does_not_hold_up_another_connections_lease_of_the_same_artist(funded_artist):
    job = make_queued_job(funded_artist, frames=2)
    first, second = Frame.objects.filter(job=job).order_by("pk")
    held, release, failure, holder = threading.Event(), threading.Event(), [], {}

    def hold() -> None:
        try:
            with transaction.atomic():
                lifecycle.frames_lease(frame_ids=[first.pk])
                holder["slot"] = _slot()
                held.set()
                release.wait(10)
        except Exception as exc:  # reported below
            failure.append(exc)
            held.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10) and not failure, failure
        while _slot() == holder["slot"]:  # another slot, as most concurrent connections have
            connection.close()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '2s'")  # one row for the artist would wait for the holder
            assert lifecycle.frames_lease(frame_ids=[second.pk]) == [second.pk]
    finally:
        release.set()
        thread.join()
    assert not failure, failure
    assert_kept(funded_artist)


@pytest.fixture
def without_triggers():
    """The frame table as before migration 0008: no triggers, no counts; the triggers are back afterwards."""
    with connection.schema_editor() as editor:
        MIGRATION.backwards(None, editor)
    LeasedCount.objects.all().delete()
    yield
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM pg_trigger WHERE tgname LIKE 'jobs_frame_leased_count%'")
        if cur.fetchone()[0] == 0:  # the test failed before it ran the migration again
            LeasedCount.objects.all().delete()
            with connection.schema_editor() as editor:
                MIGRATION.forwards(None, editor)


def test_the_migration_counts_the_frames_leased_before_it(funded_artist, second_artist, without_triggers):
    mine = Frame.objects.filter(job=make_queued_job(funded_artist, frames=4))
    lifecycle.frames_lease(frame_ids=list(mine.values_list("pk", flat=True)))
    theirs = Frame.objects.filter(job=make_queued_job(second_artist, frames=3)).order_by("pk")
    lifecycle.frames_lease(frame_ids=list(theirs.values_list("pk", flat=True)[:1]))
    assert leased_count_drift() == {funded_artist.pk: (0, 4), second_artist.pk: (0, 1)}

    with connection.schema_editor() as editor:
        MIGRATION.forwards(None, editor)
    assert_kept(funded_artist, second_artist)
    lifecycle.frames_lease(frame_ids=list(theirs.filter(state=FrameState.QUEUED).values_list("pk", flat=True)))
    assert kept(second_artist) == 3  # the triggers count again
    assert_kept(funded_artist, second_artist)


def test_the_matcher_ranks_artists_by_the_kept_count(funded_artist, second_artist, provider):
    """The count, not the frames: an artist whose count says busy goes after one whose count says idle."""
    mine = make_queued_job(funded_artist, frames=2)
    theirs = make_queued_job(second_artist, frames=2)
    node, _ = make_node(provider, unchecked=True)
    LeasedCount.objects.create(owner=funded_artist, slot=15, frames=5)
    with transaction.atomic():
        _, read = batch._node_round_read(node, None)
        assert [f.job_id for f in read.locked] == [theirs.pk]
        transaction.set_rollback(True)
    LeasedCount.objects.filter(owner=funded_artist).delete()
    LeasedCount.objects.create(owner=second_artist, slot=15, frames=5)
    with transaction.atomic():
        _, read = batch._node_round_read(node, None)
        assert [f.job_id for f in read.locked] == [mine.pk]
        transaction.set_rollback(True)
