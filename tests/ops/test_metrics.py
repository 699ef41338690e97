"""/metrics and the farm page: the market's own gauges from the database, for admins and the scrape token only."""

import os
import re
import socket
import time

import pytest
import redis
from django.test import Client

from marketplace.dispatch import services as dispatch
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.nodes.models import WorkerNode
from marketplace.ops.selectors import celery_queue_names, farm_snapshot
from scripts.services import free_port
from tests.fixtures.market import make_node, make_queued_job

pytestmark = pytest.mark.django_db


def value(body: str, name: str, **labels) -> float:
    label = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{name}{{{label}}} (\S+)$" if labels else rf"^{name} (\S+)$"
    found = re.search(pattern, body, re.M)
    assert found, f"{name} {labels} not in metrics"
    return float(found.group(1))


@pytest.fixture
def farm_state(funded_artist, provider):
    job = make_queued_job(funded_artist, frames=3)
    Frame.objects.filter(job=job, number=1).update(state=FrameState.SETTLED)
    make_node(provider, name="a")
    make_node(provider, name="b")
    return job


def test_anonymous_artists_and_providers_get_nothing(client, artist, provider, settings):
    settings.OPS_METRICS_TOKEN = "scrape-" + "x" * 40
    assert client.get("/metrics").status_code == 403
    for user in (artist, provider):
        client.force_login(user)
        assert client.get("/metrics").status_code == 403
        assert client.get("/ops/farm/").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


def test_no_token_configured_means_no_token_access(settings):
    settings.OPS_METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_the_scrape_token_reads_the_farm_gauges(farm_state, settings):
    settings.OPS_METRICS_TOKEN = "scrape-" + "x" * 40
    dispatch.node_heartbeat(node=WorkerNode.objects.get(name="a"), lease_ids=[])  # gathered, not yet written
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.OPS_METRICS_TOKEN}")
    assert response.status_code == 200
    body = response.content.decode()
    assert value(body, "market_frames", state="queued") == 2
    assert value(body, "market_frames", state="settled") == 1
    assert value(body, "market_nodes", state="idle") == 2
    assert value(body, "market_dispatch_lag_seconds") >= 0
    assert value(body, "market_celery_queue_depth", queue="celery") >= 0
    assert value(body, "market_heartbeats_waiting") == 1
    assert value(body, "market_heartbeat_pace_seconds") == 10  # two nodes: the shortest pace
    assert "django_http_requests_total_by_method_total" in body  # django-prometheus' own metrics beside ours


def test_an_admin_sees_the_farm_page_and_the_metrics(farm_state, admin_user, client):
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200
    page = client.get("/ops/farm/").content.decode()
    assert "Oldest frame waiting for a node" in page
    assert re.search(r"<td>queued</td><td>2</td>", page)
    pace = r"Agents heartbeat every 10 s \(longer as the farm grows\); a node unheard\s+for 60 s is offline"
    assert re.search(pace, page)


def test_a_broker_that_is_down_reads_as_unreachable_on_both_pages(farm_state, admin_user, client, settings):
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.CELERY_BROKER_URL = settings.AGENT_BROKER_URL = down
    client.force_login(admin_user)
    body = client.get("/metrics").content.decode()
    assert value(body, "market_frames", state="queued") == 2  # the database's gauges are still there
    assert "market_celery_queue_depth{" not in body and "market_agent_queue_depth" not in body
    assert "market_heartbeats_waiting" not in body
    page = client.get("/ops/farm/").content.decode()
    # each Celery queue, the agents' queues, the heartbeats waiting
    assert page.count("broker unreachable") == len(celery_queue_names()) + 2


def test_scrapes_reuse_one_connection_per_broker(farm_state, settings):
    if not os.environ.get("TEST_REDIS_URL"):
        pytest.skip("needs the real Redis of `make test` (TEST_REDIS_URL)")
    server = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def connections() -> int:
        return server.info("stats")["total_connections_received"]

    first = farm_snapshot()  # opens what the scrapes keep
    assert first.celery_queues["celery"] is not None and first.agent_queue_messages is not None
    before = connections()
    for _ in range(5):
        farm_snapshot()
    assert connections() == before


def test_a_broker_that_does_not_answer_reads_as_unreachable_within_seconds(settings):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections wait in its backlog, never answered
        settings.CELERY_BROKER_URL = settings.AGENT_BROKER_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        snap = farm_snapshot()
        waited = time.monotonic() - started
    assert set(snap.celery_queues.values()) == {None} and snap.agent_queue_messages is None
    assert snap.heartbeats_waiting is None
    assert waited < 10, f"the scrape waited {waited:.1f} s"  # 2 s per broker, not the OS's socket timeout


@pytest.mark.django_db(transaction=True)
def test_the_farm_shows_how_many_online_nodes_have_a_canary_ready(farm_state, admin_user, client, settings):
    from marketplace.verification import services as verification
    from tests.verification.test_canaries import canary_job

    settings.OPS_METRICS_TOKEN = "scrape-" + "x" * 40
    scrape = Client(HTTP_AUTHORIZATION=f"Bearer {settings.OPS_METRICS_TOKEN}")
    client.force_login(admin_user)
    assert value(scrape.get("/metrics").content.decode(), "market_canary_offers") == 0
    page = client.get("/ops/farm/").content.decode()
    assert re.search(r"Online nodes with a canary ready</dt><dd>0 of 2<", page) and "canary_setup" in page

    canary_job(frames=1)  # one scene: offered to one node of the provider only
    verification.canary_offers_renew()
    assert value(scrape.get("/metrics").content.decode(), "market_canary_offers") == 1
    page = client.get("/ops/farm/").content.decode()
    assert re.search(r"Online nodes with a canary ready</dt><dd>1 of 2<", page) and "canary_setup" not in page


def test_the_frames_gauge_counts_the_frames_of_open_jobs_only(farm_state, funded_artist):
    from marketplace.jobs.models import Job
    from marketplace.jobs.states import JobState

    finished = make_queued_job(funded_artist, frames=2)  # history: read at every scrape, it grew without bound
    Frame.objects.filter(job=finished).update(state=FrameState.SETTLED)
    Job.objects.filter(pk=finished.pk).update(state=JobState.DONE)
    frames = farm_snapshot().frames
    assert (frames[FrameState.SETTLED], frames[FrameState.QUEUED]) == (1, 2)  # farm_state's running job
