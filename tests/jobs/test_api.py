import io
import zipfile
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace.jobs.models import Job
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from tests.fixtures.api import bearer
from tests.fixtures.money import fund
from tests.jobs.conftest import rendered, settle_with_result

pytestmark = pytest.mark.django_db


def test_a_script_quotes_accepts_follows_and_cancels_a_job(funded_artist, scene):
    api = bearer(funded_artist)
    quote = api.post("/api/v1/jobs/", {"scene": scene.pk, "frame_end": 3, "samples": 16}, format="json")
    assert quote.status_code == 201, quote.content
    body = quote.json()
    assert body["state"] == JobState.QUOTED and body["samples"] == 16 and body["quote"]["frames"] == 3
    assert body["quote"]["total"] == 3 * body["price_per_frame"]

    accepted = api.post(f"/api/v1/jobs/{body['id']}/accept/")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["state"] == JobState.QUEUED
    assert [f["number"] for f in accepted.json()["frames"]] == [1, 2, 3]
    assert accepted.json()["escrow_left"] == body["quote"]["total"] and accepted.json()["cost_so_far"] == 0

    listed = api.get("/api/v1/jobs/").json()
    assert [j["id"] for j in listed] == [body["id"]]
    detail = api.get(f"/api/v1/jobs/{body['id']}/").json()
    assert {f["state"] for f in detail["frames"]} == {FrameState.QUEUED}

    cancelled = api.post(f"/api/v1/jobs/{body['id']}/cancel/")
    assert cancelled.status_code == 200
    assert cancelled.json()["refunded"] == body["quote"]["total"] and cancelled.json()["frames_cancelled"] == 3
    assert cancelled.json()["job"]["state"] == JobState.CANCELLED
    assert ledger.user_escrow_total(user=funded_artist) == 0


def test_the_download_streams_the_settled_frames_to_their_owner_only(funded_artist, outsider, scene, node):
    api = bearer(funded_artist)
    job_id = api.post("/api/v1/jobs/", {"scene": scene.pk, "frame_end": 3}, format="json").json()["id"]
    api.post(f"/api/v1/jobs/{job_id}/accept/")
    url = f"/api/v1/jobs/{job_id}/download/"
    nothing = api.get(url, HTTP_ACCEPT="application/zip")
    assert nothing.status_code == 404 and "no finished frames" in nothing.json()["detail"]
    job = Job.objects.get(pk=job_id)
    data = settle_with_result(job.frames.get(number=2), node, seed=2)
    rendered(job.frames.get(number=3), node)
    response = api.get(url, HTTP_ACCEPT="application/zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip" and response.streaming
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.namelist() == [f"job{job_id}/frame_000002.png"] and archive.read(archive.namelist()[0]) == data
    assert bearer(outsider).get(url).status_code == 404


def test_denoising_can_be_set_through_the_api(funded_artist, scene):
    body = bearer(funded_artist).post("/api/v1/jobs/", {"scene": scene.pk, "use_denoising": True}, format="json")
    assert body.status_code == 201 and body.json()["use_denoising"] is True


def test_bad_settings_get_a_clear_400_and_store_nothing(funded_artist, scene):
    api = bearer(funded_artist)
    response = api.post("/api/v1/jobs/", {"scene": scene.pk, "resolution_x": 9000}, format="json")
    assert response.status_code == 400 and "resolution_x must be between 4 and 8192" in response.json()["detail"]
    response = api.post("/api/v1/jobs/", {"scene": scene.pk, "samples": "many"}, format="json")
    assert response.status_code == 400 and "samples" in response.json()["errors"]
    assert api.post("/api/v1/jobs/", {}, format="json").status_code == 400
    assert not Job.objects.exists()


def test_accepting_without_funds_is_402_and_changes_nothing(artist, scene):
    fund(artist, 1)
    api = bearer(artist)
    job_id = api.post("/api/v1/jobs/", {"scene": scene.pk}, format="json").json()["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/accept/")
    assert response.status_code == 402 and "tokens in your wallet" in response.json()["detail"]
    assert Job.objects.get(pk=job_id).state == JobState.QUOTED and ledger.user_escrow_total(user=artist) == 0


def test_an_expired_quote_is_refused_through_the_api(funded_artist, scene):
    api = bearer(funded_artist)
    body = api.post("/api/v1/jobs/", {"scene": scene.pk}, format="json").json()
    assert body["quote_expires_at"]
    Job.objects.filter(pk=body["id"]).update(created_at=timezone.now() - timedelta(days=2))
    response = api.post(f"/api/v1/jobs/{body['id']}/accept/")
    assert response.status_code == 400 and "this quote expired" in response.json()["detail"]
    assert Job.objects.get(pk=body["id"]).state == JobState.QUOTED
    assert ledger.user_escrow_total(user=funded_artist) == 0


def test_another_artist_gets_404_for_the_scene_and_the_job(funded_artist, outsider, scene):
    job_id = bearer(funded_artist).post("/api/v1/jobs/", {"scene": scene.pk}, format="json").json()["id"]
    eve = bearer(outsider)
    assert eve.post("/api/v1/jobs/", {"scene": scene.pk}, format="json").status_code == 404
    assert eve.get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert eve.post(f"/api/v1/jobs/{job_id}/accept/").status_code == 404
    assert eve.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 404
    assert eve.get("/api/v1/jobs/").json() == []
    assert Job.objects.get(pk=job_id).state == JobState.QUOTED


def test_the_api_needs_a_valid_token(scene):
    assert APIClient().get("/api/v1/jobs/").status_code in (401, 403)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer tok_nope.nope")
    assert client.get("/api/v1/jobs/").status_code == 401


def test_the_schema_documents_the_job_endpoints(artist):
    client = APIClient()
    client.force_authenticate(artist)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    for path in (
        "/api/v1/jobs/",
        "/api/v1/jobs/{job_id}/",
        "/api/v1/jobs/{job_id}/accept/",
        "/api/v1/jobs/{job_id}/cancel/",
        "/api/v1/jobs/{job_id}/download/",
    ):
        assert path in schema
    assert "JobQuoteRequest" in schema and "max_price_per_frame" in schema


def test_the_api_quote_says_what_compute_it_priced_why_and_what_priority_costs(funded_artist, scene, settings):
    settings.JOBS_PRIORITY_PREMIUM_BPS = 40
    api = bearer(funded_artist)
    plain = api.post(
        "/api/v1/jobs/", {"scene": scene.pk, "resolution_x": 640, "resolution_y": 360}, format="json"
    ).json()["quote"]
    rush = api.post(
        "/api/v1/jobs/", {"scene": scene.pk, "resolution_x": 640, "resolution_y": 360, "priority": 100}, format="json"
    ).json()["quote"]
    assert plain["pricing_basis"] == "calibrated compute" and plain["reference_seconds_per_frame"] > 0
    assert type(plain["reference_ms_per_frame"]) is int and type(plain["price_per_frame"]) is int
    assert "reference-seconds per frame" in plain["pricing_note"]
    assert rush["priority_multiplier_bps"] == 14_000 and plain["priority_multiplier_bps"] == 10_000
    assert rush["price_per_frame"] == pytest.approx(plain["price_per_frame"] * 1.4, abs=1)
