"""The node tells the market at hello whether its scene sandbox is on; its owner sees it on the nodes page."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_create
from tests.fixtures.api import bearer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("agent_queues")]

CAPS = {"devices": [{"type": "CPU", "name": "cpu"}], "cpu_cores": 2, "ram_mb": 1000, "blender_version": "5.0.1"}


def hello(token: str, **extra):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    return client.post("/api/v1/agent/hello/", {**CAPS, **extra}, format="json")


def test_hello_stores_what_the_agent_says_about_its_sandbox(provider):
    node, token = node_create(owner=provider, name="rig")
    assert node.sandbox == WorkerNode.Sandbox.UNKNOWN
    r = hello(token, sandbox="unsandboxed", sandbox_detail="Landlock unavailable (kernel without Landlock)")
    assert r.status_code == 200, r.content
    node.refresh_from_db()
    assert (node.sandbox, node.sandbox_detail) == ("unsandboxed", "Landlock unavailable (kernel without Landlock)")
    assert hello(token, sandbox="enforced", sandbox_detail="Landlock enabled (ABI 7)").status_code == 200
    node.refresh_from_db()
    assert (node.sandbox, node.sandbox_detail) == ("enforced", "Landlock enabled (ABI 7)")


def test_an_agent_that_says_nothing_about_its_sandbox_is_shown_as_not_reported(provider):
    node, token = node_create(owner=provider, name="rig")
    hello(token, sandbox="enforced", sandbox_detail="Landlock enabled (ABI 7)")
    assert hello(token).status_code == 200  # an older agent: the field must not keep a stale "enforced"
    node.refresh_from_db()
    assert (node.sandbox, node.sandbox_detail) == ("unknown", "")


@pytest.mark.parametrize("value", ["unknown", "yes", "", "enforced; drop table"])
def test_hello_refuses_a_sandbox_state_it_does_not_know(provider, value):
    node, token = node_create(owner=provider, name="rig")
    r = hello(token, sandbox=value)
    assert r.status_code == 400 and "sandbox" in r.json()["errors"]
    node.refresh_from_db()
    assert node.sandbox == "unknown" and node.status == WorkerNode.Status.OFFLINE


def test_the_nodes_page_and_api_show_the_sandbox(client, provider):
    _, safe_token = node_create(owner=provider, name="safe rig")
    _, bare_token = node_create(owner=provider, name="bare rig")
    node_create(owner=provider, name="new rig")
    hello(safe_token, sandbox="enforced", sandbox_detail="Landlock enabled (ABI 7)")
    hello(bare_token, sandbox="unsandboxed", sandbox_detail="Landlock unavailable (no kernel support)")
    client.force_login(provider)
    page = client.get(reverse("nodes:dashboard")).content.decode()
    rows = {name: page[page.index(name) :].split("</tr>", 1)[0] for name in ("safe rig", "bare rig", "new rig")}
    assert '<td class="node-sandbox" title="Landlock enabled (ABI 7)">Enforced</td>' in rows["safe rig"]
    assert '<strong class="error">Off (owner&#x27;s --allow-unsandboxed)</strong>' in rows["bare rig"]
    assert 'title="Landlock unavailable (no kernel support)"' in rows["bare rig"]
    assert ">Not reported</td>" in rows["new rig"]
    api = {n["name"]: (n["sandbox"], n["sandbox_detail"]) for n in bearer(provider).get("/api/v1/nodes/").json()}
    assert api == {
        "safe rig": ("enforced", "Landlock enabled (ABI 7)"),
        "bare rig": ("unsandboxed", "Landlock unavailable (no kernel support)"),
        "new rig": ("unknown", ""),
    }
