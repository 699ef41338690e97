"""Structured logs: every line of a request or a Celery task carries the ids it concerns, in JSON for collectors
and key=value for people, and no secret ever reaches one."""

import io
import json
import logging

import pytest
import redis
from django.conf import settings
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient
from structlog.contextvars import get_contextvars

from marketplace import blobs
from marketplace.celery import app
from marketplace.dispatch import batch, queues, services
from marketplace.dispatch.models import FrameLease
from marketplace.jobs import events
from marketplace.jobs.models import Frame
from marketplace.jobs.services import frame_settle
from marketplace.jobs.settlement_batch import frames_settle
from marketplace.jobs.states import FrameState
from marketplace.logs import task_finished, task_ids, task_started
from marketplace.verification.batch import rendered_frames_process, rendered_waiting
from tests.deploy.helpers import STRONG_KEY, settings_of
from tests.fixtures.market import make_node, make_queued_job, png_bytes
from workers import logs


def agent(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    return client


def rendered_lease(funded_artist, provider):
    """A frame leased to a node that fetched its lease and uploaded its result, ready to report."""
    job = make_queued_job(funded_artist, frames=1)
    node, token = make_node(provider, unchecked=True)
    assert services.match_frames() == 1
    msg = json.loads(redis.Redis.from_url(settings.AGENT_BROKER_URL).rpop(queues.queue_key(node.pk)))
    details = agent(token).get(f"/api/v1/agent/leases/{msg['lease']}/", HTTP_X_LEASE_TOKEN=msg["token"]).json()
    put = Client().generic(
        "PUT",
        details["upload_url"].removeprefix(settings.PUBLIC_URL),
        png_bytes(32, 24),
        content_type="application/octet-stream",
    )
    assert put.status_code == 201
    return job, node, token, msg, details


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("agent_queues")
def test_an_agent_report_logs_json_lines_with_its_node_lease_frame_job_and_request(funded_artist, provider, json_log):
    job, node, token, msg, _ = rendered_lease(funded_artist, provider)
    frame = Frame.objects.get(job=job)
    response = agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/",
        {"token": msg["token"], "ok": True, "stats": {"seconds": 1.5}},
        format="json",
    )
    assert response.status_code == 200, response.content
    request_id = response["X-Request-ID"]
    ids = {"node_id": node.pk, "lease_id": msg["lease"], "frame_id": frame.pk, "job_id": job.pk}

    reported = json_log.one("lease_reported")
    assert reported.items() >= {**ids, "request_id": request_id, "user_id": provider.pk, "accepted": True}.items()
    assert "task_id" not in reported  # the settlement task that ran inline handed the request's context back
    access = [line for line in json_log.of("request") if line["request_id"] == request_id]
    assert len(access) == 1
    assert (
        access[0].items()
        >= {
            **ids,
            "method": "POST",
            "route": "/api/v1/agent/leases/<int:lease_id>/report/",
            "status": 200,
            "user_id": provider.pk,
        }.items()
    )
    # The report committed and settled the frame in a Celery task (inline here): its lines name the task too.
    settled = json_log.one("frame_settled")
    assert settled["task_name"] == "verification.frame_rendered" and settled["task_id"]
    assert settled.items() >= {**ids, "request_id": request_id}.items()
    assert Frame.objects.get(pk=frame.pk).state == FrameState.SETTLED


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("agent_queues")
def test_a_next_call_logs_the_lease_it_finishes_and_names_the_one_it_took(funded_artist, provider, json_log):
    """`next` reads its lease only in the node's lock (one statement, issue 17); its lines still name that lease's
    frame and job, and the grant names the new lease's own."""
    job, node, token, msg, _ = rendered_lease(funded_artist, provider)
    make_queued_job(funded_artist, frames=1)  # something to take ahead
    frame = Frame.objects.get(job=job)
    response = agent(token).post(f"/api/v1/agent/leases/{msg['lease']}/next/", {"token": msg["token"]}, format="json")
    assert response.status_code == 200 and response.json()["next"], response.content
    taken = response.json()["next"]["lease"]
    ids = {"node_id": node.pk, "lease_id": msg["lease"], "frame_id": frame.pk, "job_id": job.pk}
    (access,) = [line for line in json_log.of("request") if line["request_id"] == response["X-Request-ID"]]
    assert access.items() >= {**ids, "lease_kind": "render", "status": 200}.items()
    assert json_log.one("lease_next").items() >= {**ids, "next_lease": taken}.items()
    granted = json_log.of("lease_granted")[-1]
    assert granted["lease_id"] == taken and granted["frame_id"] != frame.pk


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("agent_queues")
def test_no_token_signature_or_password_reaches_a_log_line(funded_artist, provider, json_log):
    _, _, token, msg, details = rendered_lease(funded_artist, provider)
    agent(token).post(
        f"/api/v1/agent/leases/{msg['lease']}/report/", {"token": msg["token"], "ok": True}, format="json"
    )
    refused = agent(token + "x").get(f"/api/v1/agent/leases/{msg['lease']}/", HTTP_X_LEASE_TOKEN=msg["token"])
    assert refused.status_code in (401, 403)
    upload_token = details["upload_url"].rsplit("/blobs/", 1)[1]
    presigned = "https://s3.example/b/k.png?X-Amz-Credential=AKIAEXAMPLE%2F&X-Amz-Signature=0a1b2c3d4e5f"
    logging.getLogger("dispatch").error(
        "event=upload_failed url=%s header=Authorization: Node %s password=hunter2-secret",
        presigned,
        token,
        extra={"lease_token": msg["token"], "url": details["upload_url"], "request": {"password": "hunter2-secret"}},
    )
    assert json_log.all()  # the calls above did log
    secrets = [token.split(".", 1)[1], msg["token"], upload_token, "0a1b2c3d4e5f", "AKIAEXAMPLE", "hunter2-secret"]
    assert [s for s in secrets if s in json_log.text] == []
    (line,) = [line for line in json_log.all() if line["event"].startswith("upload_failed")]
    assert line["event"] == (
        "upload_failed url=https://s3.example/b/k.png?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted] "
        "header=Authorization: [redacted] password=[redacted]"
    )
    assert line["lease_token"] == "[redacted]" and line["url"].endswith("/blobs/[redacted]")
    # The access line of the upload names its route, not the signed path.
    assert any(a["route"] == "/blobs/<str:token>" and a["method"] == "PUT" for a in json_log.of("request"))


@pytest.mark.django_db
def test_a_request_id_is_returned_and_a_callers_sane_one_kept(client, json_log):
    fresh = client.get("/")
    assert len(fresh["X-Request-ID"]) == 32
    kept = client.get("/", HTTP_X_REQUEST_ID="proxy-7f3a9c01")
    assert kept["X-Request-ID"] == "proxy-7f3a9c01"
    forged = client.get("/", HTTP_X_REQUEST_ID='x" level=critical')
    assert forged["X-Request-ID"] != 'x" level=critical' and len(forged["X-Request-ID"]) == 32
    assert [line["request_id"] for line in json_log.of("request")] == [
        fresh["X-Request-ID"],
        "proxy-7f3a9c01",
        forged["X-Request-ID"],
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("agent_queues")
def test_a_celery_task_binds_its_id_name_and_id_arguments(funded_artist, provider, json_log):
    assert task_ids(app.tasks["verification.frame_rendered"], (7,), {}) == {"frame_id": 7}
    assert task_ids(app.tasks["verification.frame_rendered"], (), {"frame_id": 7}) == {"frame_id": 7}
    job = make_queued_job(funded_artist, frames=1)
    node, _ = make_node(provider, unchecked=True)
    with logs.scope(request_id="outer"):
        result = app.tasks["dispatch.match"].delay()  # eager in tests: the real tracer, signals and all
        lease = FrameLease.objects.get(frame__job=job)
        granted = json_log.of("lease_granted")[-1]
        assert (
            granted.items()
            >= {
                "task_name": "dispatch.match",
                "task_id": result.id,
                "request_id": "outer",
                "lease_id": lease.pk,
                "frame_id": lease.frame_id,
                "job_id": job.pk,
                "node_id": node.pk,
                "lease_kind": "render",
            }.items()
        )
        logging.getLogger("test").info("event=after_task")
    after = json_log.one("after_task")
    assert after["request_id"] == "outer" and "task_id" not in after  # the caller's context, intact


@pytest.mark.django_db(transaction=True)
def test_a_batch_names_each_frames_own_lease_never_one_an_agent_call_left_bound(
    funded_artist, provider, agent_queues, json_log, monkeypatch
):
    """As the dispatch bench drives the market: agent calls through the services, outside any request, then
    one settlement batch of all the frames rendered."""
    monkeypatch.setattr(services, "_after_commit_match", lambda: None)
    monkeypatch.setitem(events._subscribers, events.FRAME_RENDERED, [])  # this test runs the batch itself
    jobs = [make_queued_job(funded_artist, frames=2), make_queued_job(funded_artist, frames=2)]
    farm = [make_node(provider, name=f"n{i}", unchecked=True)[0] for i in range(4)]
    deliveries = batch.leases_create()
    assert len(deliveries) == 4
    for d in deliveries:  # each call binds its lease's ids (services._lease_of_node) and nothing unbinds them
        message = json.loads(agent_queues.rpop(queues.queue_key(d.node_id)))
        lease = FrameLease.objects.get(pk=message["lease"])
        blobs.blob_put(key=lease.result_key, fileobj=io.BytesIO(png_bytes(32, 24, seed=lease.pk)))
        node = next(n for n in farm if n.pk == d.node_id)
        assert services.lease_report(node=node, lease_id=lease.pk, token=message["token"], ok=True).accepted
    last = get_contextvars()
    assert last["lease_id"] == deliveries[-1].lease_id  # the leak's source: the last call's lease stays bound

    assert len(rendered_frames_process(frame_ids=rendered_waiting(limit=10, besides=[]))) == 4
    settled = json_log.of("frame_settled")
    assert len(settled) == 4
    for line in settled:
        lease = FrameLease.objects.select_related("frame").get(frame_id=line["frame_id"])
        assert (line["lease_id"], line["job_id"], line["node_id"], line.get("lease_kind")) == (
            lease.pk,
            lease.frame.job_id,
            lease.node_id,
            None,
        )
    assert {line["job_id"] for line in settled} == {job.pk for job in jobs}
    assert get_contextvars() == last  # the caller's context, back as it was


def test_an_eager_task_drops_its_callers_lease_and_frame_and_keeps_its_request():
    task = app.tasks["verification.crop_reported"]
    with logs.scope(request_id="r1", user_id=2, lease_id=10, frame_id=11, job_id=12, node_id=13, lease_kind="render"):
        outer = get_contextvars()
        task_started(task_id="t1", task=task, args=(20,))
        assert get_contextvars() == {
            "request_id": "r1",
            "user_id": 2,
            "lease_id": 20,
            "task_id": "t1",
            "task_name": "verification.crop_reported",
        }
        task_finished(task_id="t1")
        assert get_contextvars() == outer


def test_the_dev_format_is_readable_key_value_and_production_is_json():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("console"))
    logger = logging.getLogger("test.console")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with logs.scope(node_id=3, lease_id=9):
            logger.warning("event=lease_expired", extra={"frame_id": 4, "reason": "node went quiet"})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue().strip()
    assert "[warning" in line and "lease_expired [test.console]" in line
    assert "frame_id=4" in line and "lease_id=9" in line and "node_id=3" in line and "reason='node went quiet'" in line
    assert not line.startswith("{")
    assert settings.LOG_FORMAT == "console"  # the tests run with DEBUG=1, as `make run` does


def test_production_logs_json_unless_told_otherwise(tmp_path):
    """Loads production settings (and Django's logging set-up with them) in a fresh process."""
    assert settings_of(tmp_path, ["LOG_FORMAT"], SECRET_KEY=STRONG_KEY)["LOG_FORMAT"] == "json"
    assert settings_of(tmp_path, ["LOG_FORMAT"], SECRET_KEY=STRONG_KEY, LOG_FORMAT="console")["LOG_FORMAT"] == "console"


def test_fields_named_like_secrets_are_redacted_and_amounts_in_tokens_kept():
    event = {
        "event": "payout lease_token=abc123 tokens=5",
        "lease_token": "s3cr3t",
        "Authorization": "Node x",
        "amount_tokens": 5,
        "nested": {"password": "p", "frame_id": 3},
    }
    assert logs.redact_secrets(None, "info", event) == {
        "event": "payout lease_token=[redacted] tokens=5",
        "lease_token": "[redacted]",
        "Authorization": "[redacted]",
        "amount_tokens": 5,
        "nested": {"password": "[redacted]", "frame_id": 3},
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["one", "batch"])
def test_a_settlement_rolled_back_logs_no_payment_and_a_committed_one_logs_it_once(
    funded_artist, provider, json_log, path
):
    """frame_settled lines are written once the payment commits (they used to be written inside the transaction,
    while it held the balance rows every settlement takes, and stayed in the log when it rolled back)."""
    job = make_queued_job(funded_artist, frames=1)
    frame = job.frames.get()
    node, _ = make_node(provider, unchecked=True)
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.RENDERED, node=node, result_key="results/f.png")

    def pay() -> None:
        if path == "one":
            assert frame_settle(frame_id=frame.pk, node_id=node.pk)
        else:
            assert frames_settle(node_of={frame.pk: node.pk}, lease_of={frame.pk: 0}) == [frame.pk]

    with pytest.raises(RuntimeError), transaction.atomic():
        pay()
        raise RuntimeError("the caller's transaction fails after the payment")
    assert json_log.of("frame_settled") == []
    assert Frame.objects.get(pk=frame.pk).state == FrameState.RENDERED

    pay()
    (line,) = json_log.of("frame_settled")
    assert line.items() >= {"frame_id": frame.pk, "job_id": job.pk, "node_id": node.pk}.items()


@pytest.mark.django_db
def test_a_routine_heartbeat_logs_its_access_line_at_debug_and_a_refused_one_at_info(provider, json_log):
    _, token = make_node(provider, unchecked=True)
    answered = agent(token).post("/api/v1/agent/heartbeat/", {"leases": []}, format="json")
    refused = agent("nd_forged.token").post("/api/v1/agent/heartbeat/", {"leases": []}, format="json")
    assert (answered.status_code, refused.status_code) == (200, 401)
    seen = {line["request_id"]: line for line in json_log.of("request")}
    assert answered["X-Request-ID"] not in seen  # ~1,700 a second at 100,000 nodes: not an operator's reading
    assert seen[refused["X-Request-ID"]]["status"] == 401  # a refused one is
    logging.getLogger().setLevel(logging.DEBUG)  # an operator who asks for them gets them
    again = agent(token).post("/api/v1/agent/heartbeat/", {"leases": []}, format="json")
    (line,) = [line for line in json_log.of("request") if line["request_id"] == again["X-Request-ID"]]
    assert line.items() >= {"view": "agent-heartbeat", "status": 200, "level": "debug"}.items()
