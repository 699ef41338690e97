"""Signup refuses weak passwords (Django's validators are on)."""

import pytest
from django.urls import reverse

from marketplace.accounts.models import User
from tests.fixtures.personas import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password123", "too common"),
        ("8273645190", "entirely numeric"),
        ("Zq9!", "too short"),
        ("newbie-newbie", "too similar"),
    ],
)
def test_signup_refuses_a_weak_password(client, password, why):
    r = client.post(
        reverse("signup"),
        {
            "username": "newbie-newbie",
            "email": "n@example.com",
            "role": "artist",
            "password1": password,
            "password2": password,
        },
    )
    assert r.status_code == 200 and why in r.content.decode()
    assert not User.objects.filter(username="newbie-newbie").exists()


def test_signup_accepts_a_long_uncommon_password(client):
    r = client.post(
        reverse("signup"),
        {
            "username": "newbie",
            "email": "n@example.com",
            "role": "artist",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert r.status_code == 302 and User.objects.filter(username="newbie").exists()
