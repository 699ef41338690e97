import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from marketplace.accounts.services import api_token_create
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import Capabilities, NodeError, node_authenticate, node_create, node_hello

pytestmark = pytest.mark.django_db


def test_a_node_token_is_shown_once_and_stored_hashed(provider):
    node, token = node_create(owner=provider, name="rig")
    assert token.split(".", 1)[1] not in node.token_hash
    assert node_authenticate(plaintext=token) == node
    assert node_authenticate(plaintext=token + "x") is None
    assert node_authenticate(plaintext="garbage") is None


def test_artists_cannot_register_nodes(artist):
    with pytest.raises(NodeError, match="only GPU providers"):
        node_create(owner=artist, name="rig")


def test_hello_records_capabilities_and_picks_the_best_device(provider):
    node, _ = node_create(owner=provider, name="rig")
    node = node_hello(
        node=node,
        capabilities=Capabilities(
            devices=[
                {"type": "CPU", "name": "EPYC"},
                {"type": "CUDA", "name": "RTX 4090", "vram_mb": 24564},
                {"type": "OPTIX", "name": "RTX 4090", "vram_mb": 24564},
            ],
            cpu_cores=16,
            ram_mb=65536,
            blender_version="5.0.1",
        ),
    )
    assert (node.device_type, node.vram_mb, node.status) == ("OPTIX", 24564, WorkerNode.Status.IDLE)


def test_the_dashboard_creates_a_node_and_shows_its_token_once(client, provider):
    client.force_login(provider)
    r = client.post(reverse("nodes:create"), {"name": "garage rig"}, follow=True)
    page = r.content.decode()
    assert "garage rig" in page and "shown once" in page
    node = WorkerNode.objects.get(owner=provider)
    assert node.token_prefix in page
    assert "shown once" not in client.get(reverse("nodes:dashboard")).content.decode()


def test_an_artist_has_no_provider_dashboard(client, artist):
    client.force_login(artist)
    assert client.get(reverse("nodes:dashboard")).status_code == 404


def test_pausing_someone_elses_node_is_a_404(client, provider, admin_user):
    node, _ = node_create(owner=admin_user, name="theirs")
    client.force_login(provider)
    assert client.post(reverse("nodes:pause", args=[node.pk]), {"paused": "1"}).status_code == 404
    node.refresh_from_db()
    assert node.status != WorkerNode.Status.PAUSED


def test_pause_and_resume(client, provider):
    node, _ = node_create(owner=provider, name="rig")
    node_hello(node=node, capabilities=Capabilities(devices=[], cpu_cores=2, ram_mb=1, blender_version="5.0.1"))
    client.force_login(provider)
    client.post(reverse("nodes:pause", args=[node.pk]), {"paused": "1"})
    node.refresh_from_db()
    assert node.status == WorkerNode.Status.PAUSED
    client.post(reverse("nodes:pause", args=[node.pk]), {"paused": "0"})
    node.refresh_from_db()
    assert node.status == WorkerNode.Status.IDLE


def test_the_api_registers_a_node_with_a_provider_token(provider, artist):
    _, plaintext = api_token_create(user=provider, name="ci")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    r = client.post("/api/v1/nodes/", {"name": "api rig"}, format="json")
    assert r.status_code == 201 and r.json()["token"].startswith("nd")
    assert [n["name"] for n in client.get("/api/v1/nodes/").json()] == ["api rig"]
    _, artist_token = api_token_create(user=artist, name="ci")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {artist_token}")
    assert client.post("/api/v1/nodes/", {"name": "nope"}, format="json").status_code == 403
    assert client.get("/api/v1/nodes/").json() == []
