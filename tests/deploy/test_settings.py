"""Production settings are safe by default: each test loads them in a fresh process with a chosen environment."""

import pytest

from marketplace.keys import DEV_SECRET_KEY
from scripts.dev import dev_env
from tests.deploy.helpers import STRONG_KEY, django_run, settings_of

SECURITY = [
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "CSRF_TRUSTED_ORIGINS",
    "PAYMENTS_DEV_PROVIDER",
]


def test_debug_is_off_unless_the_environment_turns_it_on(tmp_path):
    assert settings_of(tmp_path, ["DEBUG"], SECRET_KEY=STRONG_KEY)["DEBUG"] is False
    assert settings_of(tmp_path, ["DEBUG"], DEBUG="1")["DEBUG"] is True


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (None, "SECRET_KEY is not set"),
        ("", "SECRET_KEY is not set"),
        ("change-me", "published example key"),
        (DEV_SECRET_KEY, "published example key"),
        ("django-insecure-" + "k" * 50, "published example key"),
        ("x7Qp2" * 9 + "abcd", "49 characters long"),
        ("ab" * 40, "fewer than 5 different characters"),
    ],
)
def test_with_debug_off_it_refuses_to_start_with_a_weak_key(tmp_path, key, why):
    env = {} if key is None else {"SECRET_KEY": key}
    done = django_run(tmp_path, "import django; django.setup()", **env)
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and why in done.stderr, done.stderr[-2000:]


def test_with_debug_off_a_strong_key_starts(tmp_path):
    assert settings_of(tmp_path, ["SECRET_KEY"], SECRET_KEY=STRONG_KEY)["SECRET_KEY"] == STRONG_KEY


def test_the_dev_payment_provider_needs_its_own_switch_even_in_debug(tmp_path):
    debug_only = settings_of(tmp_path, ["PAYMENTS_DEV_PROVIDER"], DEBUG="1")
    assert debug_only["PAYMENTS_DEV_PROVIDER"] is False and debug_only["dev_provider_allowed"] is False
    assert settings_of(tmp_path, [], DEBUG="1", PAYMENTS_DEV_PROVIDER="1")["dev_provider_allowed"] is True
    prod = settings_of(tmp_path, [], SECRET_KEY=STRONG_KEY)
    assert prod["dev_provider_allowed"] is False


def test_make_run_says_dev_mode_and_dev_payments_explicitly():
    env = dev_env({})
    assert env["DEBUG"] == "1" and env["PAYMENTS_DEV_PROVIDER"] == "1"
    assert dev_env({"DEBUG": "0"})["DEBUG"] == "0"  # an explicit choice wins


def test_an_https_public_url_turns_on_secure_cookies_hsts_and_the_ssl_redirect(tmp_path):
    s = settings_of(tmp_path, SECURITY, SECRET_KEY=STRONG_KEY, PUBLIC_URL="https://market.example.com")
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"] and s["SECURE_SSL_REDIRECT"]
    assert s["SECURE_HSTS_SECONDS"] >= 31_536_000 and s["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and s["SECURE_HSTS_PRELOAD"]
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://market.example.com"]


def test_a_plain_http_public_url_keeps_cookies_usable_on_loopback(tmp_path):
    s = settings_of(tmp_path, SECURITY, DEBUG="1", PUBLIC_URL="http://127.0.0.1:8000")
    assert not s["SESSION_COOKIE_SECURE"] and not s["SECURE_SSL_REDIRECT"] and s["SECURE_HSTS_SECONDS"] == 0


def test_password_validators_are_on(tmp_path):
    names = settings_of(tmp_path, ["AUTH_PASSWORD_VALIDATORS"], SECRET_KEY=STRONG_KEY)["AUTH_PASSWORD_VALIDATORS"]
    assert {v["NAME"].rsplit(".", 1)[1] for v in names} >= {
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    }


def test_postgres_prepares_repeated_statements_unless_a_pooler_needs_them_off(tmp_path):
    url = {"DATABASE_URL": "postgres://market@127.0.0.1:5432/market", "SECRET_KEY": STRONG_KEY}
    prepared = settings_of(tmp_path, ["DATABASES"], **url)["DATABASES"]["default"]["OPTIONS"]
    assert prepared["server_side_binding"] is True and prepared["prepare_threshold"] == 5
    off = settings_of(tmp_path, ["DATABASES"], **url, DATABASE_PREPARED_STATEMENTS="0")["DATABASES"]["default"]
    assert "server_side_binding" not in off["OPTIONS"] and "prepare_threshold" not in off["OPTIONS"]
    sqlite = settings_of(tmp_path, ["DATABASES"], SECRET_KEY=STRONG_KEY)["DATABASES"]["default"]["OPTIONS"]
    assert "server_side_binding" not in sqlite  # SQLite has no such option


def test_postgres_sessions_run_without_jit_and_keep_the_options_of_the_database_url(tmp_path):
    url = "postgres://market@db.internal:5432/market?sslmode=verify-full&options=-c%20statement_timeout%3D30000"
    options = settings_of(tmp_path, ["DATABASES"], DATABASE_URL=url, SECRET_KEY=STRONG_KEY)["DATABASES"]["default"][
        "OPTIONS"
    ]
    assert options["sslmode"] == "verify-full"  # an operator's TLS setting is not dropped by ours
    assert options["options"] == "-c statement_timeout=30000 -c jit=off"
    on = settings_of(tmp_path, ["DATABASES"], DATABASE_URL=url, DATABASE_JIT="1", SECRET_KEY=STRONG_KEY)
    assert on["DATABASES"]["default"]["OPTIONS"]["options"] == "-c statement_timeout=30000"


def test_the_market_s_postgres_sessions_run_without_jit(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("Postgres only")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
