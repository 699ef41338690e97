"""An artist deletes a scene (page and API): it is gone from their lists and cannot be quoted; refused while an
active job uses it; another user's scene is a 404 and stays."""

import pytest
from django.urls import reverse

from marketplace.jobs.errors import JobNotFound
from marketplace.jobs.services import job_cancel, job_quote
from marketplace.scenes import selectors, services
from marketplace.scenes.models import Scene
from tests.fixtures.api import bearer
from tests.jobs.conftest import calibrated_scene

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(artist) -> Scene:
    return calibrated_scene(artist)


def test_the_owner_deletes_a_scene_from_its_page(client, artist, scene):
    client.force_login(artist)
    response = client.post(reverse("scenes:delete", args=[scene.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("scenes:list")
    assert f'data-scene="{scene.pk}"' not in client.get(reverse("scenes:list")).content.decode()
    assert client.get(reverse("scenes:detail", args=[scene.pk])).status_code == 404
    scene.refresh_from_db()
    assert scene.deleted_at is not None  # kept for the jobs that used it
    with pytest.raises(JobNotFound):
        job_quote(owner=artist, scene=scene.pk)


def test_the_api_deletes_a_scene(artist, scene):
    api = bearer(artist)
    assert api.delete(f"/api/v1/scenes/{scene.pk}/").status_code == 204
    assert api.get("/api/v1/scenes/").json() == []
    gone = api.delete(f"/api/v1/scenes/{scene.pk}/")
    assert gone.status_code == 404 and gone.json()["detail"] == "no such scene"


def test_an_outsider_gets_a_404_and_the_scene_stays(client, outsider, scene):
    response = bearer(outsider).delete(f"/api/v1/scenes/{scene.pk}/")
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"
    client.force_login(outsider)
    assert client.post(reverse("scenes:delete", args=[scene.pk])).status_code == 404
    assert Scene.objects.get(pk=scene.pk).deleted_at is None


def test_a_scene_with_an_active_job_is_not_deleted(client, artist, scene):
    job = job_quote(owner=artist, scene=scene)  # a quote can still be accepted: the scene is in use
    response = bearer(artist).delete(f"/api/v1/scenes/{scene.pk}/")
    assert response.status_code == 409 and "active job" in response.json()["detail"]
    client.force_login(artist)
    html = client.post(reverse("scenes:delete", args=[scene.pk]), follow=True).content.decode()
    assert "active job" in html and selectors.scene_of(owner=artist, scene_id=scene.pk) == scene
    job_cancel(job_id=job.pk, owner=artist)  # once the quote is discarded it can go
    assert services.scene_delete(owner=artist, scene_id=scene.pk).deleted_at is not None


def test_a_get_does_not_delete(client, artist, scene):
    client.force_login(artist)
    assert client.get(reverse("scenes:delete", args=[scene.pk])).status_code == 405
    assert Scene.objects.get(pk=scene.pk).deleted_at is None
