"""Matching: priority first, fair across artists, fits the node, never hands a frame out twice."""

import pytest

from marketplace.dispatch import services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.nodes.models import WorkerNode
from tests.fixtures.market import make_node, make_queued_job
from tests.fixtures.money import fund

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quiet(monkeypatch, agent_queues):
    monkeypatch.setattr(services, "_after_commit_match", lambda: None)


def owners_of_leased() -> list[int]:
    return list(FrameLease.objects.order_by("pk").values_list("frame__job__owner_id", flat=True))


def test_higher_priority_jobs_are_rendered_first(funded_artist, outsider, provider):
    fund(outsider, 10**9)
    low = make_queued_job(funded_artist, frames=2, priority=0)
    high = make_queued_job(outsider, frames=2, priority=5)
    for i in range(2):
        make_node(provider, name=f"n{i}", unchecked=True)
    assert services.match_frames() == 2
    assert set(FrameLease.objects.values_list("frame__job_id", flat=True)) == {high.pk}
    assert not Frame.objects.filter(job=low).exclude(state="queued").exists()


def test_artists_share_nodes_instead_of_one_starving_the_other(funded_artist, outsider, provider):
    fund(outsider, 10**9)
    make_queued_job(funded_artist, frames=10)  # the first artist queued a lot, earlier
    make_queued_job(outsider, frames=2)
    for i in range(4):
        make_node(provider, name=f"n{i}", unchecked=True)
    assert services.match_frames() == 4
    owners = owners_of_leased()
    assert owners.count(outsider.pk) == 2 and owners.count(funded_artist.pk) == 2


def test_a_node_below_its_owners_price_floor_gets_nothing(funded_artist, provider):
    make_queued_job(funded_artist, frames=1, price=1_000)
    node, _ = make_node(provider, unchecked=True)
    WorkerNode.objects.filter(pk=node.pk).update(min_price_per_frame=5_000)
    assert services.match_frames() == 0


def test_a_node_on_another_blender_series_gets_nothing(funded_artist, provider):
    make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    WorkerNode.objects.filter(pk=node.pk).update(blender_version="4.2.3", blender_series=",4.2,")
    assert services.match_frames() == 0


def test_a_paused_or_silent_node_gets_nothing(funded_artist, provider):
    from datetime import timedelta

    from django.utils import timezone

    make_queued_job(funded_artist, frames=2)
    paused, _ = make_node(provider, name="paused", unchecked=True)
    silent, _ = make_node(provider, name="silent", unchecked=True)
    WorkerNode.objects.filter(pk=paused.pk).update(status=WorkerNode.Status.PAUSED)
    WorkerNode.objects.filter(pk=silent.pk).update(last_heartbeat=timezone.now() - timedelta(hours=1))
    assert services.match_frames() == 0


@pytest.mark.postgres
def test_many_matchers_never_lease_one_frame_twice(funded_artist, provider):
    from tests.fixtures.race import race

    make_queued_job(funded_artist, frames=6)
    nodes = [make_node(provider, name=f"n{i}", unchecked=True)[0] for i in range(8)]
    results = race(lambda i: services.lease_create_for_node(node=nodes[i]), 8)
    leased = [r for r in results if isinstance(r, services.Delivery)]
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(leased) == 6  # six frames, eight nodes: two go without
    frames = list(FrameLease.objects.values_list("frame_id", flat=True))
    assert len(frames) == len(set(frames)) == 6
    assert Frame.objects.filter(state="leased").count() == 6
