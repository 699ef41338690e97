"""Issue 14: one rule for which nodes can take work, read by the matcher and by quotes alike; one place that reads
bans; one rule for which nodes may verify a crop."""

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.accounts.models import User
from marketplace.accounts.services import user_ban, user_create
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.services import job_quote
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import available_nodes, idle_capacity, node_is_banned
from marketplace.nodes.services import node_set_paused, node_status_sync
from marketplace.verification import policy
from marketplace.verification import services as verification
from marketplace.verification.models import NodeTrust
from marketplace.verification.services import trust_record
from tests.fixtures.market import make_node, make_queued_job, make_scene

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def manual_matching(monkeypatch):
    """Matching runs only when a test calls it."""
    monkeypatch.setattr(dispatch, "_after_commit_match", lambda: None)


def another_provider(name: str) -> User:
    return user_create(username=name, password="x" * 12, role=User.Role.PROVIDER)


@pytest.fixture
def farm(funded_artist, provider):
    """One node that can take work and one of each kind that cannot; all benchmarked, so quotes count each
    node the rule lets through."""
    node = {}
    node["available"], _ = make_node(provider, name="available", unchecked=True)
    node["busy"], _ = make_node(provider, name="busy", unchecked=True)
    make_queued_job(funded_artist, frames=1)
    assert dispatch.lease_create_for_node(node=node["busy"]) is not None
    node["admin_banned"], _ = make_node(provider, name="admin banned", unchecked=True)
    dispatch.node_ban(node_id=node["admin_banned"].pk)
    node["paused"], _ = make_node(provider, name="paused", unchecked=True)
    node_set_paused(owner=provider, node_id=node["paused"].pk, paused=True)
    node["agent_paused"], _ = make_node(provider, name="agent paused", unchecked=True)
    dispatch.node_heartbeat(node=node["agent_paused"], lease_ids=[], paused=True)
    # Stored status still idle for these three: the facts (silence, no runtime, the account's ban) must be read.
    node["silent"], _ = make_node(provider, name="silent", unchecked=True)
    WorkerNode.objects.filter(pk=node["silent"].pk).update(last_heartbeat=timezone.now() - timedelta(minutes=10))
    node["no_runtime"], _ = make_node(provider, name="no runtime", unchecked=True)
    WorkerNode.objects.filter(pk=node["no_runtime"].pk).update(blender_series="")
    cheat = another_provider("cheat")
    node["account_banned"], _ = make_node(cheat, name="account banned", unchecked=True)
    user_ban(user_id=cheat.pk)
    WorkerNode.objects.update(bench_score=100.0)
    return node


def test_quotes_and_matching_count_the_same_nodes(farm, funded_artist):
    stored = dict(WorkerNode.objects.values_list("name", "status"))
    assert [stored[n] for n in ("silent", "no runtime", "account banned")] == ["idle"] * 3  # not synced yet
    assert set(available_nodes().values_list("pk", flat=True)) == {farm["available"].pk}
    assert idle_capacity() == [100.0]
    quote = job_quote(owner=funded_artist, scene=make_scene(funded_artist)).quote
    assert quote["idle_nodes"] == 1

    make_queued_job(funded_artist, frames=len(farm) * 2)  # work enough for every node
    before = set(FrameLease.objects.values_list("pk", flat=True))
    assert dispatch.match_frames() == 1
    leased_to = set(FrameLease.objects.exclude(pk__in=before).values_list("node_id", flat=True))
    assert leased_to == {farm["available"].pk}
    assert idle_capacity() == [] and not available_nodes().exists()  # busy now: neither counts it

    node_status_sync()  # the reaper's sweep: derived statuses agree, nothing becomes available
    assert not available_nodes().exists() and dispatch.match_frames() == 0


def test_a_ban_is_read_from_the_node_or_its_providers_account(provider):
    own, _ = make_node(provider, name="own", unchecked=True)
    sibling, _ = make_node(provider, name="sibling", unchecked=True)
    assert not node_is_banned(node_id=own.pk)
    dispatch.node_ban(node_id=own.pk)  # an admin bans one node: the others of the provider work on
    assert node_is_banned(node_id=own.pk) and not node_is_banned(node_id=sibling.pk)
    dispatch.node_ban(node_id=own.pk, banned=False)
    assert not node_is_banned(node_id=own.pk)
    for i in range(policy.BAN_AFTER_FAILURES):  # failed checks ban the account: all of its nodes
        trust_record(node_id=own.pk, passed=False, reason=f"crop {i} differs")
    assert node_is_banned(node_id=own.pk) and node_is_banned(node_id=sibling.pk)
    assert WorkerNode.objects.get(pk=own.pk).banned_at is None  # the ban is the account's, not the node's
    assert set(WorkerNode.objects.filter(owner=provider).values_list("status", flat=True)) == {"banned"}


def test_the_verifier_rule_picks_another_providers_node_on_the_same_backend_and_series(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=3)
    rule = {"job_id": job.pk, "blender_series": job.blender_series, "device": "CPU", "candidate_owner_id": provider.pk}
    make_node(provider, name="own", unchecked=True)
    other = another_provider("other")
    fit, _ = make_node(other, name="fit", unchecked=True)
    make_node(other, name="cuda", device="CUDA", unchecked=True)
    make_node(other, name="other series", series=["4.5"], unchecked=True)
    caught, _ = make_node(other, name="caught", unchecked=True)
    NodeTrust.objects.filter(node=caught).update(consecutive_passes=policy.TRUSTED_AFTER - 1, checks_failed=1)
    redeemed, _ = make_node(another_provider("third"), name="redeemed", unchecked=True)
    NodeTrust.objects.filter(node=redeemed).update(consecutive_passes=policy.TRUSTED_AFTER, checks_failed=1)
    assert {n.name for n in policy.verifiers_for(**rule)} == {"fit", "redeemed"}

    for _ in range(policy.ABANDONS_PER_JOB):  # a node that abandoned the job's leases verifies none of it
        delivery = dispatch.lease_create_for_node(node=fit)
        dispatch.lease_release(node=fit, lease_id=delivery.lease_id, token=delivery.token)
    assert {n.name for n in policy.verifiers_for(**rule)} == {"redeemed"}

    # The verify lease goes by the rule: to the one eligible node; with that one busy, to nobody (the platform).
    frame, crop = job.frames.first(), {"x": 0, "y": 0, "w": 4, "h": 4}
    delivery = verification.crop_lease_create(frame_id=frame.pk, crop=crop, exclude_owner_id=provider.pk)
    assert FrameLease.objects.get(pk=delivery.lease_id).node_id == redeemed.pk
    assert verification.crop_lease_create(frame_id=frame.pk, crop=crop, exclude_owner_id=provider.pk) is None
