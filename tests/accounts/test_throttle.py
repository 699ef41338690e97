"""Login and bearer tokens are throttled by django-axes per (username or token prefix, client IP)."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from marketplace.accounts.services import api_token_create
from marketplace.nodes.services import node_create
from tests.fixtures.personas import PASSWORD

pytestmark = pytest.mark.django_db

ATTACKER, FRIEND = "203.0.113.7", "198.51.100.9"


@pytest.fixture
def axes_on(settings):
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 5
    return settings.AXES_FAILURE_LIMIT


def _login(client, username, password, ip):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_repeated_wrong_passwords_lock_the_login_even_for_the_right_one(client, artist, axes_on):
    for _ in range(axes_on - 1):
        assert _login(client, artist.username, "wrong password", ATTACKER).status_code == 200  # the form again
    assert _login(client, artist.username, "wrong password", ATTACKER).status_code == 429  # the limit-th
    r = _login(client, artist.username, PASSWORD, ATTACKER)
    assert r.status_code == 429
    assert "_auth_user_id" not in client.session
    # The lockout is per (username, IP): the attacker cannot lock the owner out from everywhere.
    r = _login(client, artist.username, PASSWORD, FRIEND)
    assert r.status_code == 302 and client.session["_auth_user_id"] == str(artist.pk)


def test_a_correct_login_resets_the_count(client, artist, axes_on):
    for _ in range(axes_on - 1):
        _login(client, artist.username, "wrong password", ATTACKER)
    assert _login(client, artist.username, PASSWORD, ATTACKER).status_code == 302
    client.logout()
    for _ in range(axes_on - 1):
        _login(client, artist.username, "wrong password", ATTACKER)
    assert _login(client, artist.username, PASSWORD, ATTACKER).status_code == 302


def test_guessing_an_api_tokens_secret_is_locked_out(artist, axes_on):
    _, plaintext = api_token_create(user=artist, name="script")
    prefix = plaintext.split(".")[0]
    client = APIClient(REMOTE_ADDR=ATTACKER)
    for i in range(axes_on):
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {prefix}.guess{i}")
        assert client.get("/api/v1/nodes/").status_code == (401 if i < axes_on - 1 else 429)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get("/api/v1/nodes/").status_code == 429  # even the right secret, from this client
    friend = APIClient(REMOTE_ADDR=FRIEND)
    friend.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert friend.get("/api/v1/nodes/").status_code == 200


def test_the_api_lockout_is_a_problem_with_retry_after_and_the_login_lockout_a_page(client, artist, axes_on):
    _, plaintext = api_token_create(user=artist, name="script")
    api = APIClient(REMOTE_ADDR=ATTACKER)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext.split('.')[0]}.guess")
    answers = [api.get("/api/v1/nodes/") for _ in range(axes_on + 1)]
    for locked in answers[-2:]:  # the failure that reaches the limit, then any later try
        assert locked.status_code == 429 and locked["Content-Type"] == "application/problem+json", locked.content
        body = locked.json()
        assert body["status"] == 429 and body["title"] == "Too Many Requests" and body["detail"], body
    assert int(answers[-2]["Retry-After"]) == 15 * 60  # AXES_COOLOFF_TIME: a quarter of an hour
    for _ in range(axes_on):
        page = _login(client, artist.username, "wrong password", ATTACKER)
    assert page.status_code == 429 and page["Content-Type"].startswith("text/html")


def test_guessing_a_node_tokens_secret_is_locked_out(provider, axes_on):
    _, token = node_create(owner=provider, name="rig")
    _, other_token = node_create(owner=provider, name="rig-2")
    prefix = token.split(".")[0]
    client = APIClient(REMOTE_ADDR=ATTACKER)
    for i in range(axes_on):
        client.credentials(HTTP_AUTHORIZATION=f"Node {prefix}.guess{i}")
        assert client.post("/api/v1/agent/heartbeat/", {}, format="json").status_code == (
            401 if i < axes_on - 1 else 429
        )
    client.credentials(HTTP_AUTHORIZATION=f"Node {token}")
    assert client.post("/api/v1/agent/heartbeat/", {}, format="json").status_code == 429
    # Only that token is locked: the provider's other node behind the same address keeps working.
    client.credentials(HTTP_AUTHORIZATION=f"Node {other_token}")
    assert client.post("/api/v1/agent/heartbeat/", {}, format="json").status_code == 200


def test_without_axes_the_same_guesses_are_only_refused(artist, settings):
    settings.AXES_ENABLED = False  # the tests' default (Client.login passes no request); production has it on
    _, plaintext = api_token_create(user=artist, name="script")
    client = APIClient(REMOTE_ADDR=ATTACKER)
    for i in range(8):
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext.split('.')[0]}.guess{i}")
        assert client.get("/api/v1/nodes/").status_code == 401


def test_behind_a_proxy_the_lockout_follows_the_client_not_a_forged_header(client, artist, axes_on, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for i in range(axes_on):  # the attacker forges a new X-Forwarded-For each time; the proxy appends its address
        r = client.post(
            reverse("login"),
            {"username": artist.username, "password": "wrong password"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}, {ATTACKER}",
        )
    assert r.status_code == 429
    r = client.post(
        reverse("login"),
        {"username": artist.username, "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=f"192.0.2.99, {ATTACKER}",
    )
    assert r.status_code == 429
    r = client.post(
        reverse("login"),
        {"username": artist.username, "password": PASSWORD},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=FRIEND,
    )  # another client through the same proxy is not locked out
    assert r.status_code == 302
