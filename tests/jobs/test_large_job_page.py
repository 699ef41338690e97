"""Large jobs on the job page: one page of frames (grid and table), the whole job as a run-length state strip,
a full-size viewer image; a 10,000-frame job's page stays under 100 KB and an idle poll under 5 KB."""

import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from marketplace.jobs import selectors
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState, JobState
from tests.fixtures.market import make_queued_job
from tests.jobs.conftest import settle_with_result

pytestmark = pytest.mark.django_db
FRAMES = 10_000


@pytest.fixture
def big_job(funded_artist) -> Job:
    job = make_queued_job(funded_artist, frames=FRAMES, price=1_000)
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
    Frame.objects.filter(job=job, number__lte=120).update(state=FrameState.SETTLED)
    Frame.objects.filter(job=job, number__in=(121, 122)).update(state=FrameState.LEASED)
    # Older than the poll's slack (jobs.live.SLACK_SECONDS): as if the page had been open for a while.
    Frame.objects.filter(job=job).update(updated_at=timezone.now() - timedelta(minutes=1))
    job.refresh_from_db()
    return job


def test_a_10000_frame_job_page_is_small_and_an_idle_poll_tiny(client, funded_artist, big_job):
    client.force_login(funded_artist)
    page = client.get(reverse("jobs:detail", args=[big_job.pk]))
    assert page.status_code == 200
    size = len(page.content)
    assert size <= 100_000, f"first load {size} bytes"
    html = page.content.decode()
    assert 'data-runs="s120 l2 q9878"' in html
    assert html.count('class="frame-card') == selectors.FRAMES_PER_PAGE
    assert "Page 1 of 209" in html
    first = client.get(reverse("jobs:fragment", args=[big_job.pk]), {"cursor": "", "page": 1}).json()
    idle = client.get(reverse("jobs:fragment", args=[big_job.pk]), {"cursor": first["cursor"], "page": 1})
    assert len(idle.content) <= 5_000, f"idle poll {len(idle.content)} bytes"
    assert idle.json()["parts"] == {} and idle.json()["rows"] == {}
    print(f"\n10,000-frame job: first load {size:,} bytes, idle poll {len(idle.content):,} bytes")


def test_a_page_shows_only_its_frames_and_junk_pages_fall_back(client, funded_artist, big_job):
    client.force_login(funded_artist)
    second = client.get(reverse("jobs:detail", args=[big_job.pk]), {"page": 2}).content.decode()
    assert 'data-frame="49"' in second and 'data-frame="96"' in second
    assert 'data-frame="48"' not in second and 'data-frame="97"' not in second
    for junk in ("0", "-3", "abc", "99999"):
        assert client.get(reverse("jobs:detail", args=[big_job.pk]), {"page": junk}).status_code == 200
    assert selectors.frame_page(job=big_job, page="99999").number == 209


def test_a_poll_sends_only_the_changed_frames_of_its_page(client, funded_artist, big_job, node):
    client.force_login(funded_artist)
    url = reverse("jobs:fragment", args=[big_job.pk])
    cursor = client.get(url, {"cursor": "", "page": 3}).json()["cursor"]
    on_page = big_job.frames.get(number=100)  # page 3: frames 97-144
    elsewhere = big_job.frames.get(number=5000)
    Frame.objects.filter(pk__in=(on_page.pk, elsewhere.pk)).update(state=FrameState.FAILED, updated_at=timezone.now())
    answer = client.get(url, {"cursor": cursor, "page": 3}).json()
    assert set(answer["rows"]) == {f"frame-row-{on_page.pk}", f"frame-card-{on_page.pk}"}
    assert "f1" in answer["parts"]["strip"]  # the strip shows the change anywhere in the job


def test_the_viewer_serves_a_finished_frame_at_full_size_and_nothing_else(
    client, funded_artist, outsider, big_job, node
):
    frame = big_job.frames.get(number=130)
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.LEASED)
    settle_with_result(frame, node, seed=7)
    client.force_login(funded_artist)
    response = client.get(reverse("jobs:image", args=[big_job.pk, frame.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (32, 24)
    queued = big_job.frames.get(number=9000)
    assert client.get(reverse("jobs:image", args=[big_job.pk, queued.pk])).status_code == 404
    client.force_login(outsider)
    assert client.get(reverse("jobs:image", args=[big_job.pk, frame.pk])).status_code == 404
