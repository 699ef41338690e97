"""The artist's flow in real Chromium: upload the demo scene with the progress bar, see the inspection,
settings and quote, accept, the escrow hold on the ledger page, cancel, the refund."""
import os
import re

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from marketplace.jobs.models import Job
from marketplace.jobs.states import JobState
from marketplace.scenes.models import Scene
from marketplace.web.templatetags.money import tokens
from tests.fixtures.money import fund
from tests.fixtures.personas import PASSWORD

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
M = 1_000_000


@pytest.fixture
def browser(live_server, settings, tmp_path):
    settings.PUBLIC_URL = live_server.url
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        connections.close_all()  # Playwright's greenlet has its own connections; Postgres must drop the test DB


@pytest.fixture(scope="module")
def demo_blend(tmp_path_factory):
    from workers.blend import make_demo_scene

    path = tmp_path_factory.mktemp("demo") / "demo.blend"
    make_demo_scene(path, frames=4, resolution=(64, 36), samples=8)
    return path


def test_upload_quote_accept_see_escrow_cancel_see_refund(browser, live_server, artist, demo_blend):
    fund(artist, 100 * M)
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", artist.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"^(?!.*/accounts/login/)"))

    page.goto(f"{live_server.url}/scenes/upload/")
    page.set_input_files("#id_file", str(demo_blend))
    shown: list[str] = []  # what the progress bar showed, reported from the page as it changes
    page.expose_function("reportUpload", lambda text: shown.append(text))
    page.evaluate("""() => {
        const box = document.getElementById('upload-progress'), pct = document.getElementById('upload-percent');
        new MutationObserver(() => window.reportUpload(box.hidden ? 'hidden' : pct.textContent))
            .observe(pct, {childList: true, characterData: true, subtree: true});
    }""")
    xhr = lambda r: r.method == "POST" and r.headers.get("x-requested-with") == "XMLHttpRequest"  # noqa: E731
    with page.expect_request(xhr):
        page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/scenes/\d+/$"))
    assert shown and shown[-1] == "100 %" and "hidden" not in shown, shown
    scene = Scene.objects.get(owner=artist)
    assert page.inner_text("#scene-status") == "Ready"  # inspected with bpy (eager Celery in tests)
    assert scene.report["frame_end"] == 4 and scene.report["calibration"]["samples"] == 8
    page.click("text=Get a quote")
    page.wait_for_url(re.compile(rf"/jobs/new/\?scene={scene.pk}$"))
    assert page.inner_text("#scene-status") == "Ready"
    page.fill("#id_samples", "16")
    page.click("text=Get a quote")
    page.wait_for_selector("#quote-total")
    job = Job.objects.get(owner=artist)
    total = job.quote["total"]
    assert page.inner_text("#quote-total") == f"{tokens(total)} tokens" and job.samples == 16
    assert "no idle capacity right now" in page.inner_text("#quote-time")

    page.click("text=Accept and hold")
    page.wait_for_selector("#job-escrow")
    assert "held in escrow for 4 frames" in page.inner_text(".messages")
    assert page.inner_text("#job-escrow") == f"{tokens(total)} tokens"
    page.goto(f"{live_server.url}/ledger/")
    assert page.inner_text('[data-balance="escrow"]') == tokens(total)
    assert page.inner_text('[data-balance="artist_wallet"]') == tokens(100 * M - total)

    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.click("text=Cancel job")
    page.wait_for_selector(".messages")
    assert f"{tokens(total)} tokens refunded" in page.inner_text(".messages")
    assert page.inner_text("#job-state") == "Cancelled"
    page.goto(f"{live_server.url}/ledger/")
    assert page.inner_text('[data-balance="escrow"]') == "0"
    assert page.inner_text('[data-balance="artist_wallet"]') == tokens(100 * M)
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
