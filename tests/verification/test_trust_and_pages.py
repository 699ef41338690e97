"""Adaptive trust, the per-frame status selector and include, and the node verification page."""

import itertools

import pytest
from django.template import Context, Template
from django.test import Client

from marketplace.accounts.models import User
from marketplace.dispatch import services as dispatch
from marketplace.jobs.models import Frame
from marketplace.nodes.selectors import node_is_banned
from marketplace.verification import policy, selectors, services
from marketplace.verification.models import NodeTrust, TrustEvent
from tests.fixtures.market import make_node, make_queued_job
from tests.fixtures.personas import PASSWORD
from tests.verification.helpers import lease_and_report, other_provider, truth_image


def test_new_nodes_are_checked_on_every_frame_then_decay_to_the_floor():
    rates = [policy.check_rate(consecutive_passes=n) for n in range(0, 80)]
    assert rates[: policy.TRUSTED_AFTER] == [1.0] * policy.TRUSTED_AFTER
    assert rates[policy.TRUSTED_AFTER] == 0.5 and rates[policy.TRUSTED_AFTER + policy.HALVE_EVERY] == 0.25
    assert min(rates) == policy.FLOOR == rates[-1]
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_the_steady_verification_budget_is_under_five_percent():
    # Measured by bench_verify's verification_overhead: a crop of 2 % costs 2.4 % of a render (its area
    # plus the per-render scene sync) and its comparison 0.1 %.
    crop_cost = 1.2 * policy.CROP_FRACTION + 0.001
    steady = policy.FLOOR * (policy.CROPS_PER_CHECK * crop_cost + policy.CANARY_SHARE)
    assert steady <= 0.05


@pytest.mark.django_db
def test_one_failure_resets_trust_and_three_ban(provider):
    node, _ = make_node(provider)
    for _ in range(policy.TRUSTED_AFTER + 5):
        services.trust_record(node_id=node.pk, passed=True, reason="ok")
    assert NodeTrust.objects.get(node=node).check_rate == 0.5
    services.trust_record(node_id=node.pk, passed=False, reason="crop differs")
    trust = NodeTrust.objects.get(node=node)
    assert (trust.consecutive_passes, trust.check_rate, node_is_banned(node_id=node.pk)) == (0, 1.0, False)
    for _ in range(policy.BAN_AFTER_FAILURES - 1):
        services.trust_record(node_id=node.pk, passed=False, reason="crop differs")
    assert node_is_banned(node_id=node.pk) and User.objects.get(pk=provider.pk).banned_at is not None
    assert TrustEvent.objects.filter(node=node, kind="ban").count() == 1
    services.trust_record(node_id=node.pk, passed=False, reason="again")
    assert TrustEvent.objects.filter(node=node, kind="ban").count() == 1


@pytest.fixture
def checked_job(funded_artist, provider, platform_truth, agent_queues, monkeypatch):
    """A 3-frame job: frame 1 verified, frame 2 failed (requeued), frame 3 not rendered yet."""
    monkeypatch.setattr(dispatch, "_after_commit_match", lambda: None)
    platform_truth.image = truth_image()
    job = make_queued_job(funded_artist, frames=3, width=32, height=24)
    node, _ = make_node(provider)
    lease_and_report(node, platform_truth.image)
    lease_and_report(node, truth_image(seed=7))
    return job, node


@pytest.mark.django_db(transaction=True)
def test_frame_checks_give_each_checked_frame_its_latest_status(checked_job):
    job, _ = checked_job
    frames = {f.number: f.pk for f in Frame.objects.filter(job=job)}
    statuses = selectors.frame_checks(job.pk)
    assert set(statuses) == {frames[1], frames[2]}
    assert statuses[frames[1]].state == "passed" and statuses[frames[1]].crops_done == policy.CROPS_PER_CHECK
    assert statuses[frames[2]].state == "failed" and "SSIM" in statuses[frames[2]].reason

    template = Template("{% load verification %}{% for f in frames %}[{% frame_status statuses f %}]{% endfor %}")
    html = template.render(Context({"statuses": statuses, "frames": [frames[1], frames[2], frames[3]]}))
    assert 'data-verification="passed"' in html and ">verified<" in html
    assert 'data-verification="failed"' in html and 'data-verification="none"' in html


@pytest.mark.django_db(transaction=True)
def test_the_owner_sees_trust_history_and_reasons(checked_job, provider):
    _, node = checked_job
    client = Client()
    client.login(username=provider.username, password=PASSWORD)
    page = client.get(f"/verification/nodes/{node.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Check failed" in html and "SSIM" in html and "Check passed" in html
    assert 'data-check="passed"' in html and 'data-check="failed"' in html


@pytest.mark.django_db(transaction=True)
def test_admins_see_any_nodes_page(checked_job, admin_user):
    _, node = checked_job
    client = Client()
    client.login(username=admin_user.username, password=PASSWORD)
    assert client.get(f"/verification/nodes/{node.pk}/").status_code == 200


@pytest.mark.django_db
def test_other_users_get_404_and_anonymous_users_a_login(provider, outsider):
    node, _ = make_node(provider)
    rival = other_provider()
    for user in (outsider, rival):
        client = Client()
        client.force_login(user)
        assert client.get(f"/verification/nodes/{node.pk}/").status_code == 404
    assert Client().get(f"/verification/nodes/{node.pk}/").status_code == 302
    owner = Client()
    owner.force_login(provider)
    assert owner.get("/verification/nodes/999999/").status_code == 404
    assert "No checks yet" in owner.get(f"/verification/nodes/{node.pk}/").content.decode()
