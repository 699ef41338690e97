"""Trust against sybils and hoarders: abandoned leases count, a ban is the provider's, new nodes are limited,
and a banned or deleted node keeps no broker user. Real Postgres and the real agent broker (Redis ACL users).
"""

from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.accounts.models import User
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.nodes import broker
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import node_is_banned
from marketplace.nodes.services import NodeError, node_create, node_delete
from marketplace.verification import policy, services
from marketplace.verification.models import NodeTrust, TrustEvent
from tests.fixtures.api import bearer
from tests.fixtures.market import make_node, make_queued_job
from tests.verification.helpers import other_provider, take

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues", "manual_matching")]


HELLO = {"devices": [{"type": "CPU", "name": "cpu"}], "cpu_cores": 2, "ram_mb": 1000, "blender_version": "5.0.1"}


def agent(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    return client


def broker_user(node) -> list | None:
    return broker.agent_redis().execute_command("ACL", "GETUSER", f"node-{node.pk}")


def lease_job_frame(node, job):
    delivery = dispatch.lease_create_for_node(node=node)
    assert delivery is not None, "the node got no frame"
    take(node)
    lease = FrameLease.objects.get(pk=delivery.lease_id)
    assert lease.frame.job_id == job.pk
    return lease, delivery


# --- hoarding ---------------------------------------------------------------------------------------


def test_a_node_that_abandons_two_leases_of_a_job_gets_no_more_of_its_frames_and_loses_trust(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=4)
    node, _ = make_node(provider)
    NodeTrust.objects.create(
        node=node, consecutive_passes=35, checks_passed=35, check_rate=policy.check_rate(consecutive_passes=35)
    )

    lease, delivery = lease_job_frame(node, job)  # 1: released (the agent gave it back)
    dispatch.lease_release(node=node, lease_id=lease.pk, token=delivery.token)
    trust = NodeTrust.objects.get(node=node)
    assert trust.consecutive_passes == 35 - policy.ABANDON_PASSES_LOST
    assert trust.check_rate == policy.check_rate(consecutive_passes=25) > policy.check_rate(consecutive_passes=35)

    lease, _ = lease_job_frame(node, job)  # 2: expired (the agent went silent)
    FrameLease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert dispatch.leases_reap() == 1
    trust.refresh_from_db()
    assert trust.consecutive_passes == 35 - 2 * policy.ABANDON_PASSES_LOST
    assert trust.checks_failed == 0 and not node_is_banned(node_id=node.pk)  # an abandoned lease is not a cheat
    events = TrustEvent.objects.filter(node=node, kind=TrustEvent.Kind.ABANDONED).order_by("pk")
    assert [e.reason.split()[-1] for e in events] == ["released", "expired"]

    # Its frames are back in the queue for others, and this node gets no more of this job ...
    assert Frame.objects.filter(job=job, state=FrameState.QUEUED).count() == 4
    WorkerNode.objects.filter(pk=node.pk).update(status=WorkerNode.Status.IDLE)
    assert dispatch.lease_create_for_node(node=node) is None
    other_node, _ = make_node(other_provider(), name="other")
    assert lease_job_frame(other_node, job)[0].frame.job_id == job.pk
    # ... but still gets other jobs' frames.
    second = make_queued_job(funded_artist, frames=1)
    assert lease_job_frame(node, second)[0].frame.job_id == second.pk


# --- bans are the account's -------------------------------------------------------------------------


def test_a_ban_stops_every_node_of_the_provider_and_its_new_ones(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=4)
    cheat, _ = make_node(provider, name="cheat")
    sibling, sibling_token = make_node(provider, name="sibling")
    for node in (cheat, sibling):
        broker.node_broker_url(node_id=node.pk)
        assert broker_user(node) is not None
    held, held_delivery = lease_job_frame(sibling, job)  # the sibling is rendering a frame when the ban falls

    for i in range(policy.BAN_AFTER_FAILURES):
        services.trust_record(node_id=cheat.pk, passed=False, reason=f"crop {i} differs")

    provider.refresh_from_db()
    assert provider.banned_at is not None
    held.refresh_from_db()
    assert held.state == FrameLease.State.REVOKED and held.frame.state == FrameState.QUEUED  # back in the queue
    with pytest.raises(dispatch.LeaseRefused, match="revoked"):
        dispatch.lease_report(node=sibling, lease_id=held.pk, token=held_delivery.token, ok=True)
    WorkerNode.objects.filter(pk=sibling.pk).update(status=WorkerNode.Status.IDLE)
    assert dispatch.lease_create_for_node(node=sibling) is None  # the other node gets no work
    assert dispatch.match_frames() == 0
    assert broker_user(cheat) is None and broker_user(sibling) is None  # no broker access left
    # Its agents get a clear refusal, and no new broker user from hello.
    hello = agent(sibling_token).post("/api/v1/agent/hello/", HELLO, format="json")
    assert hello.status_code == 403 and "banned" in hello.json()["detail"]
    assert broker_user(sibling) is None
    # A new node cannot be registered, neither by the service nor the API.
    with pytest.raises(NodeError, match="banned"):
        node_create(owner=provider, name="fresh start")
    response = bearer(provider).post("/api/v1/nodes/", {"name": "fresh start"}, format="json")
    assert response.status_code == 403 and "banned" in response.json()["detail"]
    # Another provider is unaffected.
    honest, _ = make_node(other_provider(), name="honest")
    assert dispatch.lease_create_for_node(node=honest) is not None


# --- sybils ---------------------------------------------------------------------------------------------


def test_a_providers_new_nodes_start_untrusted_and_are_limited_until_trust_is_earned(provider, settings):
    settings.VERIFICATION_MAX_UNTRUSTED_NODES = 2
    first, _ = node_create(owner=provider, name="one")
    second, _ = node_create(owner=provider, name="two")
    for node in (first, second):  # every frame of a new node is checked
        assert services.node_trust_get(node_id=node.pk).check_rate == 1.0

    with pytest.raises(NodeError, match=r"2 nodes that have not earned trust yet, the most allowed \(2\)"):
        node_create(owner=provider, name="three")
    response = bearer(provider).post("/api/v1/nodes/", {"name": "three"}, format="json")
    assert response.status_code == 403 and "not earned trust" in response.json()["detail"]
    assert WorkerNode.objects.filter(owner=provider).count() == 2
    # Another provider has its own slots.
    assert node_create(owner=other_provider(), name="three")[0].pk

    for i in range(policy.TRUSTED_AFTER):  # one node earns trust: a slot opens
        services.trust_record(node_id=first.pk, passed=True, reason=f"check {i}")
    third, _ = node_create(owner=provider, name="three")
    assert services.node_trust_get(node_id=third.pk).check_rate == 1.0
    with pytest.raises(NodeError):
        node_create(owner=provider, name="four")


# --- broker users ---------------------------------------------------------------------------------------


def test_deleting_a_node_revokes_its_broker_user_but_not_while_it_works(funded_artist, provider, outsider):
    job = make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider)
    url = broker.node_broker_url(node_id=node.pk)
    assert redis.Redis.from_url(url).ping()
    lease, delivery = lease_job_frame(node, job)

    with pytest.raises(NodeError, match="working"):
        node_delete(owner=provider, node_id=node.pk)
    assert not node_delete(owner=outsider, node_id=node.pk)  # not theirs: nothing happens
    assert broker_user(node) is not None

    refused = bearer(provider).delete(f"/api/v1/nodes/{node.pk}/")
    assert refused.status_code == 409 and "working" in refused.json()["detail"]
    assert bearer(outsider).delete(f"/api/v1/nodes/{node.pk}/").status_code in (403, 404)

    dispatch.lease_release(node=node, lease_id=lease.pk, token=delivery.token)
    assert bearer(provider).delete(f"/api/v1/nodes/{node.pk}/").status_code == 204
    assert not WorkerNode.objects.filter(pk=node.pk).exists()
    assert broker_user(node) is None
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(url).ping()
    assert Frame.objects.get(job=job).state == FrameState.QUEUED
    assert User.objects.get(pk=provider.pk).banned_at is None


def test_an_admin_ban_of_one_node_revokes_its_broker_user_and_after_the_unban_its_next_hello_gets_one(provider):
    node, token = make_node(provider)
    sibling, _ = make_node(provider, name="sibling")
    url = broker.node_broker_url(node_id=node.pk)
    broker.node_broker_url(node_id=sibling.pk)
    assert redis.Redis.from_url(url).ping()

    dispatch.node_ban(node_id=node.pk)
    assert broker_user(node) is None  # gone once the ban committed
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(url).ping()
    assert broker_user(sibling) is not None  # one node's ban, not its provider's
    # The agent, locked out of the broker, says hello again (workers.agent): refused, it gets no new user.
    refused = agent(token).post("/api/v1/agent/hello/", HELLO, format="json")
    assert refused.status_code == 403 and "banned" in refused.json()["detail"]
    assert broker_user(node) is None

    dispatch.node_ban(node_id=node.pk, banned=False)
    assert broker_user(node) is None  # the unban creates none: the agent's next hello does, as at any start
    hello = agent(token).post("/api/v1/agent/hello/", HELLO, format="json")
    assert hello.status_code == 200
    assert redis.Redis.from_url(hello.json()["broker_url"]).ping()
