"""The artist's flow in real Chromium: upload the generated demo scene with the progress bar, wait for the
inspection (real bpy, run eagerly inside the upload request), quote, accept, see the escrow hold on the ledger
page, cancel after confirming, see the refund."""

import json
import re

import pytest

from marketplace.jobs.models import Job
from marketplace.jobs.states import JobState
from marketplace.scenes.models import Scene
from marketplace.web.templatetags.money import tokens
from tests.fixtures.money import fund

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
M = 1_000_000
FUNDS = 100 * M
DEMO = {"frames": 4, "resolution": (64, 36), "samples": 8}  # the demo scene, small: the browser test stays quick

# Records what the upload page's progress bar shows, across the navigation that follows the upload.
WATCH_PROGRESS = """() => {
  const box = document.getElementById("upload-progress"), bar = document.getElementById("upload-bar");
  const seen = [];
  const note = () => {
    seen.push({visible: !box.hidden, value: bar.value});
    sessionStorage.setItem("progress", JSON.stringify(seen));
  };
  new MutationObserver(note).observe(box, {attributes: true, subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture
def demo_blend(tmp_path_factory):
    from workers.blend import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("demo") / "demo.blend", **DEMO)


@pytest.fixture(autouse=True)
def eager_inspection(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the inspection runs inside the upload request, in the server thread


def balance(page, url: str, kind: str) -> str:
    page.goto(url)
    return page.inner_text(f'[data-balance="{kind}"]')


def test_upload_quote_accept_see_escrow_cancel_see_refund(login, live_server, artist, demo_blend):
    fund(artist, FUNDS)
    ledger_url = f"{live_server.url}/ledger/"
    page = login(artist, timeout_ms=60_000)  # the inspection renders the calibration frames before the upload returns

    # Upload through the page's XHR, with its progress bar.
    page.goto(f"{live_server.url}/scenes/upload/")
    assert page.is_hidden("#upload-progress")
    page.set_input_files("input[type=file]", str(demo_blend))
    page.evaluate(WATCH_PROGRESS)
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/scenes/\d+/$"))
    progress = json.loads(page.evaluate("() => sessionStorage.getItem('progress')") or "[]")
    assert any(p["visible"] for p in progress), progress
    assert max(p["value"] for p in progress) == 100, progress

    page.wait_for_selector('#scene-status[data-status="ready"]')
    scene = Scene.objects.get(owner=artist)
    assert scene.status == Scene.Status.READY and scene.report["calibration"]["seconds"] > 0

    page.click("#get-quote")
    page.wait_for_selector("#id_samples")
    assert page.input_value("#id_samples") == "8" and page.input_value("#id_frame_end") == "4"
    page.click("text=Get a quote")
    page.wait_for_selector("#quote-total")
    job = Job.objects.get(owner=artist)
    total = job.quote["total"]
    assert job.state == JobState.QUOTED and job.quote["frames"] == 4 and job.quote["calibrated"] is True
    # The quote shows amounts rounded for reading (issue 11); the exact ones are in the title and the API.
    assert page.inner_text("#quote-total") == f"{tokens(total)} tokens"
    assert page.inner_text("#quote-price") == f"{tokens(job.price_per_frame)} tokens"
    assert "reference-seconds per frame" in page.inner_text("#quote-compute")
    assert page.inner_text("#quote-wallet") == f"{tokens(FUNDS)} tokens"
    assert "no idle capacity right now" in page.inner_text("#quote-time")

    page.click("text=Accept and hold")
    page.wait_for_selector("#job-escrow")
    assert "held in escrow for 4 frames" in page.inner_text(".messages")
    assert page.inner_text("#job-escrow") == f"{tokens(total)} tokens"
    assert balance(page, ledger_url, "escrow") == tokens(total)
    assert balance(page, ledger_url, "artist_wallet") == tokens(FUNDS - total)

    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.click("#cancel-job")
    assert f"{tokens(total)} tokens" in page.inner_text("#cancel-summary")
    page.click("text=Yes, cancel the job")
    page.wait_for_selector(".messages")
    assert f"{tokens(total)} tokens refunded" in page.inner_text(".messages")
    assert page.inner_text("#job-state") == "Cancelled"
    assert balance(page, ledger_url, "escrow") == "0.00"  # amounts read with 2 decimals
    assert balance(page, ledger_url, "artist_wallet") == tokens(FUNDS)
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
