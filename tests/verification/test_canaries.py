"""Canary frames: indistinguishable from artist work, judged against their known answer, no money moved.

Matching swaps a canary in for a node's next artist frame (`canary_frame_for`, then the usual QUEUED ->
LEASED claim and lease); `lease_canary` does the same directly. The real answer render is in test_platform.py.
"""

import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace import blobs
from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger.models import LedgerTransaction
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_create
from marketplace.verification import canaries, policy, services
from marketplace.verification.models import CanaryAnswer, FrameCheck, NodeTrust, TrustEvent
from tests.fixtures.market import REPORT, make_node, make_queued_job, make_scene
from tests.fixtures.race import race
from tests.verification.helpers import other_provider, png, take, truth_image

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues", "manual_matching")]


@pytest.fixture
def always(monkeypatch):
    monkeypatch.setattr(services, "_chance", lambda rate: True)


def canary_job(*, frames: int = 2, content: bytes = b"canary scene"):
    report = {**REPORT, "frame_start": 1, "frame_end": frames, "effective_width": 32, "effective_height": 24}
    job = canaries.canary_job_store(owner=canaries.canary_owner(), blend=content, report=report, name="scene")
    for frame in job.frames.all():
        key = blobs.blob_put(key=f"canaries/test/{frame.pk}.png", fileobj=io.BytesIO(png(truth_image())))
        CanaryAnswer.objects.create(frame=frame, answer_key=key)
    canaries.canary_job_open(job_id=job.pk)
    return job


def offered(node) -> WorkerNode:
    """`node` as matching reads it (`NODE_READS`) once the canary offers are renewed (the periodic task)."""
    services.canary_offers_renew()
    return WorkerNode.objects.select_related(services.NODE_READS).get(pk=node.pk)


def lease_canary(node) -> tuple[FrameLease, dict]:
    """What dispatch does when `canary_frame_for` offers a frame: claim it, open a render lease, deliver."""
    frame = services.canary_frame_for(node=offered(node))
    assert frame is not None
    assert lifecycle.frames_lease(frame_ids=[frame.pk]) == [frame.pk]
    delivery = dispatch._lease_open(frame=frame, node=node, kind=FrameLease.Kind.RENDER)
    return FrameLease.objects.get(pk=delivery.lease_id), take(node)


def report(node, lease, message, image) -> None:
    blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png(image)))
    assert dispatch.lease_report(node=node, lease_id=lease.pk, token=message["token"], ok=True).accepted


def test_a_canary_lease_looks_exactly_like_artist_work(funded_artist, provider, monkeypatch):
    make_queued_job(funded_artist, frames=1, width=32, height=24)
    canary_job()
    node, _ = make_node(provider)
    assert services.canary_offers_renew() == 1
    monkeypatch.setattr(services, "_chance", lambda rate: False)
    real = dispatch.lease_create_for_node(node=node)
    real_message = take(node)
    real_lease = FrameLease.objects.get(pk=real.lease_id)
    assert not real_lease.frame.job.is_canary
    dispatch.lease_release(node=node, lease_id=real.lease_id, token=real.token)

    monkeypatch.setattr(services, "_chance", lambda rate: True)
    canary = dispatch.lease_create_for_node(node=node)  # matching's own hook swaps in the canary
    lease, message = FrameLease.objects.get(pk=canary.lease_id), take(node)
    assert lease.frame.job.is_canary
    assert set(message) == set(real_message) and message["kind"] == real_message["kind"] == "render"
    assert set(lease.manifest) == set(real_lease.manifest)
    assert {k: type(v) for k, v in lease.manifest.items()} == {k: type(v) for k, v in real_lease.manifest.items()}
    same = {k for k in lease.manifest if lease.manifest[k] == real_lease.manifest[k]}
    assert {
        "samples",
        "resolution_x",
        "resolution_y",
        "file_format",
        "device",
        "scene_kind",
        "blend_path",
        "camera",
        "use_denoising",
        "blender_series",
        "border",
        "max_render_seconds",
    } <= same
    assert "canary" not in str(lease.manifest).lower()
    details = dispatch.lease_details(node=node, lease_id=lease.pk, token=message["token"])
    assert set(details) == {"lease", "kind", "expires_at", "manifest", "scene_url", "upload_url"}


def test_a_wrong_canary_is_a_failed_check_and_moves_no_money(provider, always):
    job = canary_job()
    node, _ = make_node(provider)
    transactions = LedgerTransaction.objects.count()
    lease, message = lease_canary(node)
    report(node, lease, message, truth_image(seed=5))

    check = FrameCheck.objects.get(render_lease=lease)
    assert (check.kind, check.state) == ("canary", "failed") and "differs" in check.reason
    assert check.crops.get().crop == {"x": 0, "y": 0, "w": 32, "h": 24}  # the whole frame
    event = TrustEvent.objects.get(node=node)
    assert event.kind == TrustEvent.Kind.CANARY_FAIL and "SSIM" in event.reason
    assert NodeTrust.objects.get(node=node).checks_failed == 1
    frame = Frame.objects.get(pk=lease.frame_id)
    assert frame.state == FrameState.QUEUED and frame.node_id is None and frame.job_id == job.pk
    assert LedgerTransaction.objects.count() == transactions


def test_a_right_canary_counts_as_a_pass_and_returns_to_the_pool(provider, always):
    canary_job()
    node, _ = make_node(provider)
    transactions = LedgerTransaction.objects.count()
    lease, message = lease_canary(node)
    report(node, lease, message, truth_image())
    check = FrameCheck.objects.get(render_lease=lease)
    assert (check.kind, check.state) == ("canary", "passed")
    assert NodeTrust.objects.get(node=node).checks_passed == 1
    assert Frame.objects.get(pk=lease.frame_id).state == FrameState.QUEUED
    assert LedgerTransaction.objects.count() == transactions


def test_canaries_follow_the_trust_rate_and_never_repeat_a_scene_for_a_provider(provider, monkeypatch):
    canary_job(content=b"scene one")
    node, _ = make_node(provider, name="a")
    sibling, _ = make_node(provider, name="b")
    NodeTrust.objects.create(node=node, consecutive_passes=50, check_rate=policy.FLOOR)
    rates = []
    monkeypatch.setattr(services, "_chance", lambda rate: rates.append(rate) or False)
    assert services.canary_frame_for(node=offered(node)) is None
    assert rates == [pytest.approx(policy.FLOOR * policy.CANARY_SHARE)]

    monkeypatch.setattr(services, "_chance", lambda rate: True)
    (holder,) = [n for n in (node, sibling) if services.canary_frame_for(node=offered(n))]  # one scene, one node
    lease, message = lease_canary(holder)
    report(holder, lease, message, truth_image())
    assert services.canary_frame_for(node=offered(node)) is None  # its provider has seen that scene
    assert services.canary_frame_for(node=offered(sibling)) is None
    canary_job(content=b"scene two")
    given = [services.canary_frame_for(node=offered(n)) for n in (node, sibling)]
    (frame,) = [f for f in given if f is not None]  # the new scene, to one node of the provider
    assert frame.job.scene.sha256 != lease.frame.job.scene.sha256


def test_canary_frames_need_an_answer(provider, always):
    job = canary_job(frames=1)
    CanaryAnswer.objects.filter(frame__job=job).delete()
    node, _ = make_node(provider)
    assert services.canary_frame_for(node=offered(node)) is None


def test_artist_scenes_are_never_canaries(funded_artist, provider, always):
    make_queued_job(funded_artist, frames=2, scene=make_scene(funded_artist))
    node, _ = make_node(provider)
    assert services.canary_frame_for(node=offered(node)) is None


def test_a_call_that_hands_out_a_canary_runs_the_same_statements_as_any_other(funded_artist, provider, monkeypatch):
    """A node timing its calls must not tell a canary from artist work. (Finding the canary in the call made it
    2.6 ms slower at the median, bench_agent_api at check rate 1.) Its canary is read with it in every call."""
    monkeypatch.setattr(services, "_samples_prepare_soon", lambda: None)  # after the call, on a worker
    make_queued_job(funded_artist, frames=3, width=32, height=24)
    canary_job(frames=1)
    first, _ = make_node(other_provider("first"), name="first")
    monkeypatch.setattr(services, "_chance", lambda rate: False)
    dispatch.lease_create_for_node(node=first)  # the job's first lease starts it: not what is compared
    assert Job.objects.get(is_canary=True).state == JobState.RUNNING  # opened running: no first lease starts it
    drawn, _ = make_node(provider, name="drawn")
    missed, _ = make_node(other_provider(), name="missed")
    services.canary_offers_renew()
    assert NodeTrust.objects.filter(node__in=[drawn, missed], canary__job__is_canary=True).count() == 2

    def call(node, hit: bool) -> tuple[FrameLease, list[tuple[str, ...]]]:
        monkeypatch.setattr(services, "_chance", lambda rate: hit)
        with CaptureQueriesContext(connection) as statements:
            delivery = dispatch.lease_create_for_node(node=node)
        shapes = [(q["sql"].split()[0], *sorted(set(re.findall(r'"(\w+)"\.', q["sql"])))) for q in statements]
        return FrameLease.objects.get(pk=delivery.lease_id), shapes

    canary, canary_statements = call(drawn, True)
    artist, artist_statements = call(missed, False)
    assert canary.frame.job.is_canary and not artist.frame.job.is_canary
    assert canary_statements == artist_statements and len(canary_statements) > 2


def test_an_offer_is_void_once_anyone_leased_its_canary_until_it_is_renewed(provider, always):
    canary_job(frames=1)
    node, _ = make_node(provider, name="a")
    stranger, _ = make_node(other_provider(), name="b")
    services.canary_offers_renew()
    offers = dict(NodeTrust.objects.values_list("node_id", "canary_id"))
    assert offers[node.pk] == offers[stranger.pk] is not None  # providers do not share scenes: one frame for both

    def as_matched(n) -> WorkerNode:  # without renewing the offers
        return WorkerNode.objects.select_related(services.NODE_READS).get(pk=n.pk)

    lease, message = lease_canary(node)
    assert services.canary_frame_for(node=as_matched(stranger)) is None  # leased
    report(node, lease, message, truth_image())  # checked: back in the pool, and the offers are renewed
    assert Frame.objects.get(pk=lease.frame_id).state == FrameState.QUEUED
    assert services.canary_frame_for(node=as_matched(stranger)).pk == lease.frame_id  # it never saw it
    assert services.canary_frame_for(node=as_matched(node)) is None  # never again to the provider that saw it
    assert NodeTrust.objects.get(node=node).canary_id is None

    # A lease given back (or expired) returns the canary to the pool at once, and nothing renews the offers then:
    # the node's offer names a queued canary, void all the same (`NodeTrust.canary_updated_at`).
    second, message = lease_canary(stranger)
    dispatch.lease_release(node=stranger, lease_id=second.pk, token=message["token"])
    assert Frame.objects.get(pk=second.frame_id).state == FrameState.QUEUED
    assert NodeTrust.objects.get(node=stranger).canary_id == second.frame_id
    assert services.canary_frame_for(node=as_matched(stranger)) is None
    assert services.canary_frame_for(node=offered(stranger)) is None


def test_offers_go_to_online_nodes_that_fit_one_scene_per_provider(provider, always):
    one, two = canary_job(content=b"scene one"), canary_job(content=b"scene two")
    nodes = [make_node(provider, name=f"n{i}")[0] for i in range(3)]
    silent, _ = make_node(other_provider(), name="silent")
    WorkerNode.objects.filter(pk=silent.pk).update(last_heartbeat=None)
    old, _ = make_node(other_provider(), name="old", series=["4.2"])
    banned, _ = make_node(other_provider(), name="banned")
    WorkerNode.objects.filter(pk=banned.pk).update(banned_at=timezone.now())
    NodeTrust.objects.all().delete()  # nodes without their trust row yet get one, and an offer

    assert services.canary_offers_renew() == 2 and services.canary_offers_renew() == 0
    assert set(NodeTrust.objects.values_list("node_id", flat=True)) == {n.pk for n in [*nodes, old]}
    offers = {t.node_id: t.canary for t in NodeTrust.objects.select_related("canary__job")}
    scenes = [offers[n.pk].job.scene_id for n in nodes if offers.get(n.pk)]
    assert sorted(scenes) == sorted([one.scene_id, two.scene_id])  # two scenes: two of its three nodes
    assert offers.get(silent.pk) is None and offers.get(banned.pk) is None
    assert offers[old.pk] is None  # no canary of its Blender series

    WorkerNode.objects.filter(pk=old.pk).update(blender_series="4.2,5.0")
    assert services.canary_offers_renew() == 1
    assert NodeTrust.objects.get(node=old).canary.job_id in (one.pk, two.pk)


def test_a_node_that_says_hello_gets_its_canary_offer_at_once(provider):
    canary_job()
    node, token = node_create(owner=provider, name="fresh")
    assert not NodeTrust.objects.filter(node=node).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    hello = {"devices": [{"type": "CPU", "name": "cpu"}], "cpu_cores": 2, "ram_mb": 1000, "blender_version": "5.0.1"}
    waiting, _ = make_node(other_provider(), name="waiting")  # online, no offer yet: beat's next run gives it one
    assert client.post("/api/v1/agent/hello/", hello, format="json").status_code == 200
    assert NodeTrust.objects.get(node=node).canary.job.is_canary  # asked for after its hello, not at beat's next run
    assert not NodeTrust.objects.filter(node=waiting, canary__isnull=False).exists()  # its own node, not the farm


@pytest.mark.postgres
def test_renewals_at_once_never_offer_one_scene_to_two_nodes_of_a_provider(provider):
    for n in range(3):
        canary_job(frames=1, content=b"scene %d" % n)
    nodes = [make_node(provider, name=f"n{i}", unchecked=True)[0] for i in range(6)]  # trusted: more than 3
    results = race(lambda i: services.canary_offers_renew(), 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 3  # one run offered the three scenes; the others found nothing left to do
    scenes = list(
        NodeTrust.objects.filter(node__in=nodes, canary__isnull=False).values_list("canary__job__scene_id", flat=True)
    )
    assert len(scenes) == len(set(scenes)) == 3


@pytest.mark.postgres
def test_a_renewal_reads_no_row_for_the_nodes_that_can_get_no_canary(provider):
    """A farm's canary pool is small: most nodes hold no offer and can get none (their provider holds or has seen
    every scene). Renewals run every 30 s and after each hello, so they must not read those nodes one by one."""
    canary_job(frames=2, content=b"the only scene")
    for i in range(2):
        make_node(provider, name=f"first{i}", unchecked=True)
    assert services.canary_offers_renew() == 1  # one of the two nodes holds the scene: the other can get nothing

    def rows_read() -> int:
        read = []

        def count(execute, sql, params, many, context):
            result = execute(sql, params, many, context)
            if sql.lstrip().upper().startswith("SELECT"):
                read.append(max(context["cursor"].rowcount, 0))
            return result

        with connection.execute_wrapper(count):
            assert services.canary_offers_renew() == 0
        return sum(read)

    few = rows_read()
    for i in range(20):
        make_node(provider, name=f"more{i}", unchecked=True)  # online, trusted: no offer possible
    assert rows_read() == few  # 22 nodes without an offer read as many rows as 1


def test_more_offers_than_one_statement_names_are_all_made(provider, monkeypatch):
    """Session 17's renewal named every offer in one statement and failed at 100,000 nodes (65,535 parameters)."""
    monkeypatch.setattr(services, "_IDS_PER_STATEMENT", 2)
    canary_job(frames=1, content=b"one frame, many providers")
    nodes = [make_node(other_provider(), name=f"n{i}")[0] for i in range(5)]
    NodeTrust.objects.all().delete()  # their trust rows are created in chunks too
    assert services.canary_offers_renew() == 5
    assert NodeTrust.objects.filter(node__in=nodes, canary__isnull=False).count() == 5
