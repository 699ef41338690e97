import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from marketplace.accounts.models import ApiToken, User
from marketplace.accounts.services import api_token_authenticate, api_token_create, api_token_revoke
from tests.fixtures.personas import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_token_is_stored_hashed_and_authenticates(artist):
    token, plaintext = api_token_create(user=artist, name="script")
    row = ApiToken.objects.get(pk=token.pk)
    assert plaintext.split(".", 1)[1] not in (row.secret_hash, row.prefix)
    assert api_token_authenticate(plaintext=plaintext) == artist
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


@pytest.mark.parametrize("bad", ["", "nodot", "tok.", ".secret", "tokdeadbeef.wrong-secret"])
def test_malformed_or_wrong_tokens_do_not_authenticate(artist, bad):
    api_token_create(user=artist, name="script")
    assert api_token_authenticate(plaintext=bad) is None


def test_a_revoked_token_stops_working(artist, outsider):
    token, plaintext = api_token_create(user=artist, name="script")
    assert not api_token_revoke(user=outsider, token_id=token.pk)  # not theirs
    assert api_token_authenticate(plaintext=plaintext) == artist
    assert api_token_revoke(user=artist, token_id=token.pk)
    assert api_token_authenticate(plaintext=plaintext) is None


def test_the_api_accepts_bearer_tokens_and_refuses_bad_ones(artist):
    _, plaintext = api_token_create(user=artist, name="script")
    client = APIClient()
    assert client.get("/api/v1/nodes/").status_code in (401, 403)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get("/api/v1/nodes/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Bearer tok00000000.nope")
    assert client.get("/api/v1/nodes/").status_code == 401


def test_signup_login_and_logout_pages(client):
    r = client.post(
        reverse("signup"),
        {
            "username": "newbie",
            "email": "n@example.com",
            "role": "provider",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert r.status_code == 302
    assert User.objects.get(username="newbie").role == User.Role.PROVIDER
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302
    r = client.post(reverse("login"), {"username": "newbie", "password": PASSWORD})
    assert r.status_code == 302 and client.get(reverse("home")).status_code == 200


def test_signup_cannot_grant_the_admin_role(client):
    r = client.post(
        reverse("signup"), {"username": "sneaky", "role": "admin", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert r.status_code == 200 and not User.objects.filter(username="sneaky").exists()


def test_the_ledger_page_shows_balance_and_history(client, funded_artist):
    client.force_login(funded_artist)
    page = client.get(reverse("ledger")).content.decode()
    assert "1,000" in page and "test top-up" in page


def test_token_page_shows_a_new_token_once(client, artist):
    client.force_login(artist)
    r = client.post(reverse("token_create"), {"name": "ci"}, follow=True)
    body = r.content.decode()
    assert "shown once" in body
    assert ApiToken.objects.filter(user=artist, name="ci").count() == 1
    assert "shown once" not in client.get(reverse("tokens")).content.decode()
