"""Scene pages and API: upload, list, detail; another artist gets a 404, never a 403."""

import pytest
from django.core.files.uploadhandler import MemoryFileUploadHandler
from django.urls import reverse
from rest_framework.test import APIClient

from marketplace.scenes import services
from marketplace.scenes.models import Scene
from tests.fixtures.personas import PASSWORD
from tests.scenes.conftest import stored_files, upload_file

BLEND = b"BLENDER-v500" + b"\0" * 100 + b"ENDB" + b"\0" * 20

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued_scene(artist) -> Scene:
    """A stored scene still waiting for its inspection (nothing runs bpy in these tests)."""
    return services.scene_upload(
        owner=artist, uploaded_file=upload_file("scene.blend", BLEND), name="Shot 1", enqueue=False
    )


def logged_in(client, user):
    client.login(username=user.username, password=PASSWORD)
    return client


def api_as(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def test_the_plain_form_upload_goes_to_the_scene_page(client, artist, media, monkeypatch):
    monkeypatch.setattr("marketplace.scenes.tasks.scene_inspect_task.delay", lambda scene_id: None)
    response = logged_in(client, artist).post(
        reverse("scenes:upload"), {"file": upload_file("shot.blend", BLEND), "name": "My shot"}
    )
    scene = Scene.objects.get(owner=artist)
    assert response.status_code == 302 and response["Location"] == reverse("scenes:detail", args=[scene.pk])
    assert scene.name == "My shot" and stored_files(media) == [media / scene.storage_key]


def test_the_xhr_upload_answers_json_with_the_scene_url(client, artist, media, monkeypatch):
    monkeypatch.setattr("marketplace.scenes.tasks.scene_inspect_task.delay", lambda scene_id: None)
    response = logged_in(client, artist).post(
        reverse("scenes:upload"),
        {"file": upload_file("shot.blend", BLEND)},
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    scene = Scene.objects.get(owner=artist)
    assert response.status_code == 201 and response.json() == {
        "id": scene.pk,
        "url": reverse("scenes:detail", args=[scene.pk]),
    }


def test_the_upload_page_has_the_progress_bar_and_its_script(client, artist):
    page = logged_in(client, artist).get(reverse("scenes:upload")).content.decode()
    assert '<progress id="upload-bar"' in page and "scenes/upload.js" in page
    assert 'enctype="multipart/form-data"' in page


def test_a_rejected_upload_shows_the_reason_and_stores_nothing(client, artist, media):
    response = logged_in(client, artist).post(reverse("scenes:upload"), {"file": upload_file("a.txt", b"hello")})
    assert response.status_code == 400
    assert "a.txt is not a Blender file: upload a .blend or a .zip" in response.content.decode()
    assert not Scene.objects.exists() and stored_files(media) == []


def test_an_upload_over_the_limit_is_stopped_while_it_streams(client, artist, media, settings):
    settings.SCENE_MAX_UPLOAD_BYTES = 100
    response = logged_in(client, artist).post(
        reverse("scenes:upload"),
        {"file": upload_file("big.blend", BLEND)},
        headers={"X-Requested-With": "XMLHttpRequest"},
    )
    assert response.status_code == 413 and "over the upload limit of" in response.json()["error"]
    assert not Scene.objects.exists() and stored_files(media) == []


def test_a_provider_cannot_open_the_upload_page(client, provider):
    assert logged_in(client, provider).get(reverse("scenes:upload")).status_code == 403


def test_the_scene_page_polls_while_inspecting(client, artist, queued_scene):
    page = logged_in(client, artist).get(reverse("scenes:detail", args=[queued_scene.pk])).content.decode()
    assert f'data-poll="{reverse("scenes:fragment", args=[queued_scene.pk])}"' in page
    assert "Get a quote" not in page


def test_a_ready_scene_links_to_a_quote_and_shows_warnings(client, artist, queued_scene):
    Scene.objects.filter(pk=queued_scene.pk).update(
        status=Scene.Status.READY,
        warnings=["denoising is on"],
        report={"engine": "CYCLES", "frame_start": 1, "frame_end": 4},
    )
    page = logged_in(client, artist).get(reverse("scenes:detail", args=[queued_scene.pk])).content.decode()
    assert f'href="/jobs/new/?scene={queued_scene.pk}"' in page and "denoising is on" in page
    assert "data-poll" not in page


def test_a_refused_scene_shows_each_reason(client, artist, queued_scene):
    Scene.objects.filter(pk=queued_scene.pk).update(
        status=Scene.Status.REFUSED, refusal="the scene has no camera\nunsupported engine X"
    )
    fragment = logged_in(client, artist).get(reverse("scenes:fragment", args=[queued_scene.pk])).content.decode()
    assert "<li>the scene has no camera</li>" in fragment and "<li>unsupported engine X</li>" in fragment
    assert "Get a quote" not in fragment


def test_the_list_shows_only_my_scenes(client, artist, outsider, queued_scene):
    assert "Shot 1" in logged_in(client, artist).get(reverse("scenes:list")).content.decode()
    client.logout()
    assert "Shot 1" not in logged_in(client, outsider).get(reverse("scenes:list")).content.decode()


@pytest.mark.parametrize("page", ["scenes:detail", "scenes:fragment"])
def test_another_artist_gets_a_404_page(client, outsider, queued_scene, page):
    assert logged_in(client, outsider).get(reverse(page, args=[queued_scene.pk])).status_code == 404


def test_the_api_uploads_lists_and_shows_a_scene(artist, media, monkeypatch):
    queued = []
    monkeypatch.setattr("marketplace.scenes.tasks.scene_inspect_task.delay", queued.append)
    api = api_as(artist)
    response = api.post(
        "/api/v1/scenes/", {"file": upload_file("shot.blend", BLEND), "name": "API shot"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["kind"], body["status"], body["size"]) == ("API shot", "blend", "inspecting", len(BLEND))
    assert [s["id"] for s in api.get("/api/v1/scenes/").json()] == [body["id"]]
    assert api.get(f"/api/v1/scenes/{body['id']}/").json()["sha256"] == body["sha256"]
    assert queued == []  # enqueued on commit only; this test's transaction never commits


def test_the_api_refuses_a_bad_upload_with_the_reason(artist, media):
    response = api_as(artist).post(
        "/api/v1/scenes/", {"file": upload_file("bundle.zip", b"PK\x03\x04junk")}, format="multipart"
    )
    assert response.status_code == 400 and "corrupt .zip" in response.json()["detail"]
    assert not Scene.objects.exists() and stored_files(media) == []


def test_the_api_gives_another_artist_a_404(outsider, queued_scene):
    response = api_as(outsider).get(f"/api/v1/scenes/{queued_scene.pk}/")
    assert response.status_code == 404 and response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no such scene",
    }
    assert api_as(outsider).get("/api/v1/scenes/").json() == []


def test_the_api_refuses_uploads_by_providers(provider, media):
    response = api_as(provider).post("/api/v1/scenes/", {"file": upload_file("s.blend", BLEND)}, format="multipart")
    assert response.status_code == 403 and not Scene.objects.exists()


def test_the_api_schema_describes_the_scene_endpoints(artist):
    schema = api_as(artist).get("/api/schema/", {"format": "json"}).json()
    upload = schema["paths"]["/api/v1/scenes/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "404" in schema["paths"]["/api/v1/scenes/{scene_id}/"]["get"]["responses"]


def test_the_api_stops_an_upload_over_the_limit_while_it_streams(artist, media, settings):
    settings.SCENE_MAX_UPLOAD_BYTES = 100
    response = api_as(artist).post("/api/v1/scenes/", {"file": upload_file("big.blend", BLEND)}, format="multipart")
    assert response.status_code == 413 and "the file is over the upload limit of" in response.json()["detail"]
    assert not Scene.objects.exists() and stored_files(media) == []


@pytest.mark.parametrize("via", ["page", "api"])
def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(client, artist, media, via):
    declared = {"CONTENT_LENGTH": str(10**12)}  # more than the limit; the body itself is never read
    if via == "page":
        response = logged_in(client, artist).post(
            reverse("scenes:upload"),
            {"file": upload_file("s.blend", BLEND)},
            headers={"X-Requested-With": "XMLHttpRequest"},
            **declared,
        )
    else:
        response = api_as(artist).post(
            "/api/v1/scenes/", {"file": upload_file("s.blend", BLEND)}, format="multipart", **declared
        )
    message = response.json()["error" if via == "page" else "detail"]  # the API answers problem details
    assert response.status_code == 413 and "over the upload limit of 512 MiB" in message
    assert not Scene.objects.exists() and stored_files(media) == []


class RecordingUploadHandler(MemoryFileUploadHandler):
    """Stands for Django's default handlers: records how many bytes of a file reached them."""

    received: list[int] = []

    def receive_data_chunk(self, raw_data: bytes, start: int):
        RecordingUploadHandler.received.append(len(raw_data))
        return super().receive_data_chunk(raw_data, start)


def test_a_session_api_upload_over_the_limit_is_stopped_before_the_csrf_check_reads_it(artist, media, settings):
    """DRF's CSRF check for session users parses the form: the limit must already be in place by then."""
    settings.SCENE_MAX_UPLOAD_BYTES = 100
    settings.FILE_UPLOAD_HANDLERS = [f"{__name__}.RecordingUploadHandler"]
    RecordingUploadHandler.received = []
    browser = APIClient(enforce_csrf_checks=True)
    logged_in(browser, artist)
    browser.get(reverse("scenes:upload"))  # sets the CSRF cookie, as the web page does
    big = BLEND + b"\0" * 200_000
    response = browser.post(
        "/api/v1/scenes/",
        {"file": upload_file("big.blend", big)},
        format="multipart",
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value},
    )
    assert response.status_code == 413 and "over the upload limit of" in response.json()["detail"]
    assert sum(RecordingUploadHandler.received) == 0  # not a byte of the file was kept
    assert not Scene.objects.exists() and stored_files(media) == []


def test_a_session_api_upload_with_its_csrf_token_works(artist, media, settings, monkeypatch):
    monkeypatch.setattr("marketplace.scenes.tasks.scene_inspect_task.delay", lambda scene_id: None)
    browser = APIClient(enforce_csrf_checks=True)
    logged_in(browser, artist)
    browser.get(reverse("scenes:upload"))
    without = browser.post("/api/v1/scenes/", {"file": upload_file("s.blend", BLEND)}, format="multipart")
    assert without.status_code == 403 and "CSRF" in without.json()["detail"]
    response = browser.post(
        "/api/v1/scenes/",
        {"file": upload_file("s.blend", BLEND)},
        format="multipart",
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value},
    )
    assert response.status_code == 201, response.content
    assert Scene.objects.get().size == len(BLEND)
