"""The zip download's entries: each carries the time its frame was rendered, and mode 0644."""

import io
import stat
import zipfile
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from marketplace.jobs.models import Frame, Job
from marketplace.jobs.services import job_accept, job_quote
from tests.jobs.conftest import settle_with_result

RENDERED = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


@pytest.fixture
def job(funded_artist, scene) -> Job:
    return job_accept(job_id=job_quote(owner=funded_artist, scene=scene).pk, owner=funded_artist)


def download(client, user, job: Job) -> zipfile.ZipFile:
    client.force_login(user)
    response = client.get(reverse("jobs:download", args=[job.pk]))
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_each_entry_is_dated_with_its_render_and_readable_by_all(client, funded_artist, job, node):
    reported, unreported = job.frames.get(number=1), job.frames.get(number=2)
    settle_with_result(reported, node, seed=1)
    Frame.objects.filter(pk=reported.pk).update(rendered_at=RENDERED)  # the agent's accepted report
    settle_with_result(unreported, node, seed=2)
    Frame.objects.filter(pk=unreported.pk).update(rendered_at=None)  # no report time: its settlement's
    unreported.refresh_from_db()

    archive = download(client, funded_artist, job)
    first = archive.getinfo(f"job{job.pk}/frame_000001.png")
    second = archive.getinfo(f"job{job.pk}/frame_000002.png")
    assert first.date_time == (2026, 3, 14, 15, 9, 26)
    # zip times have 2-second steps
    settled = unreported.settled_at.replace(second=unreported.settled_at.second // 2 * 2).timetuple()[:6]
    assert second.date_time == settled and second.date_time[0] >= 2026
    for info in (first, second):
        mode = info.external_attr >> 16
        assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o644, oct(mode)
    assert archive.testzip() is None
