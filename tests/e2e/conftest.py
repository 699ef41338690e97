"""Real Chromium (Debian's package, or Playwright's own build: `make test` finds one) driven by Playwright against
pytest-django's live server."""

import os
import re

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from tests.fixtures.personas import PASSWORD

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
# Without the background-networking flags Chromium keeps trying to reach Google's hosts on this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(live_server, settings, tmp_path):
    """Chromium against the live server, with files stored in the test's own directory."""
    settings.PUBLIC_URL = live_server.url
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    with sync_playwright() as pw:
        executable = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # Inside sync_playwright() Django sees another context (greenlet), hence other connections: close
        # them here, or Postgres refuses to drop the test database while they are open.
        connections.close_all()


@pytest.fixture
def login(browser, live_server):
    """`login(user)`: a new page, in its own browser context, logged in as `user` (several users at once)."""

    def logged_in(user, *, timeout_ms: int = 20_000):
        page = browser.new_context().new_page()
        page.set_default_timeout(timeout_ms)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"^(?!.*/accounts/login/)"))
        return page

    return logged_in
