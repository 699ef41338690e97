"""The job page in Chromium: the state strip, the frame grid, and the full-size viewer with previous/next."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from tests.fixtures.market import make_node, make_queued_job
from tests.jobs.conftest import settle_with_result

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"  # artifacts for reviewers, not committed


def test_the_artist_pages_through_frames_and_views_them_full_size(login, live_server, funded_artist, provider):
    job = make_queued_job(funded_artist, frames=120, price=1_000)
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
    node = make_node(provider)[0]
    for number in range(1, 7):
        frame = job.frames.get(number=number)
        Frame.objects.filter(pk=frame.pk).update(state=FrameState.LEASED)
        settle_with_result(frame, node, seed=number)
    Frame.objects.filter(job=job, number__in=(7, 8)).update(state=FrameState.LEASED)
    Frame.objects.filter(job=job, number=9).update(state=FrameState.FAILED)
    Frame.objects.filter(job=job).update(updated_at=timezone.now() - timedelta(minutes=1))
    page = login(funded_artist)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.wait_for_selector("canvas.frame-strip")
    assert page.locator(".frame-grid .frame-card").count() == 48
    assert page.get_by_text("Page 1 of 3").first.is_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "job-page.png"), full_page=False)
    page.locator(".frame-grid a.view").first.click()
    viewer = page.locator("#frame-viewer")
    viewer.wait_for(state="visible")
    page.wait_for_function("document.querySelector('#frame-viewer img').naturalWidth === 32")
    assert viewer.locator("h2").inner_text().startswith("Frame 1")
    viewer.get_by_role("button", name="Next →").click()
    page.wait_for_function("document.querySelector('#frame-viewer h2').textContent.startsWith('Frame 2')")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.querySelector('#frame-viewer h2').textContent.startsWith('Frame 3')")
    page.screenshot(path=str(SCREENSHOTS / "job-viewer.png"))
    viewer.get_by_role("button", name="Close").click()
    viewer.wait_for(state="hidden")
    # The strip jumps to the page of the place clicked: near the end of the job is page 3.
    box = page.locator("canvas.frame-strip").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2)
    page.wait_for_url("**/?page=3")
    assert page.get_by_text("Page 3 of 3").first.is_visible()
