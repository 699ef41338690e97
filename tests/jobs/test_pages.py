import io
import zipfile
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from marketplace.disputes.services import dispute_open
from marketplace.jobs.conf import dispute_window
from marketplace.jobs.models import Job
from marketplace.jobs.services import job_accept, job_quote
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger import selectors as ledger
from marketplace.web.templatetags.money import tokens
from tests.fixtures.market import make_queued_job, png_bytes
from tests.fixtures.money import fund
from tests.jobs.conftest import rendered, settle_with_result

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_of(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def job(funded_artist, scene) -> Job:
    return job_accept(job_id=job_quote(owner=funded_artist, scene=scene).pk, owner=funded_artist)


def test_the_new_job_page_shows_the_inspection_and_the_scene_defaults(client_of, artist, scene):
    page = client_of(artist).get(reverse("jobs:new") + f"?scene={scene.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "CYCLES" in html and "32\N{MULTIPLICATION SIGN}24 px" in html
    assert 'name="samples" value="8"' in html and 'name="frame_end" value="4"' in html


def test_asking_for_a_quote_shows_it_with_an_accept_button(client_of, artist, scene):
    client = client_of(artist)
    response = client.post(
        reverse("jobs:new") + f"?scene={scene.pk}",
        {
            "frame_start": 1,
            "frame_end": 4,
            "frame_step": 1,
            "resolution_x": 32,
            "resolution_y": 24,
            "samples": 8,
            "output_format": "PNG",
            "priority": 0,
            "seed": 0,
        },
    )
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("jobs:detail", args=[job.pk])
    html = client.get(response["Location"]).content.decode()
    assert job.state == JobState.QUOTED
    assert 'id="quote-total"' in html and "Accept and hold" in html and "no idle capacity right now" in html


def test_the_quote_shows_the_wallet_and_what_it_is_short_of(client_of, artist, scene):
    fund(artist, 5)
    job = job_quote(owner=artist, scene=scene)
    html = client_of(artist).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f'id="quote-wallet">{tokens(5)} tokens' in html
    assert f"{tokens(job.quote['total'] - 5)} tokens short" in html
    fund(artist, job.quote["total"])
    html = client_of(artist).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "quote-shortfall" not in html and "Accept and hold" in html


def test_an_expired_quote_offers_a_new_quote_instead_of_accept(client_of, funded_artist, scene):
    job = job_quote(owner=funded_artist, scene=scene)
    html = client_of(funded_artist).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'id="quote-valid"' in html and "Accept and hold" in html
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=2))
    client = client_of(funded_artist)
    html = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert 'id="quote-expired"' in html and "Accept and hold" not in html
    assert f'href="{reverse("jobs:new")}?scene={scene.pk}"' in html
    page = client.post(reverse("jobs:accept", args=[job.pk]), follow=True).content.decode()
    assert "this quote expired at" in page and ledger.user_escrow_total(user=funded_artist) == 0


def test_a_refused_quote_shows_why_and_stores_nothing(client_of, artist, scene):
    response = client_of(artist).post(
        reverse("jobs:new") + f"?scene={scene.pk}",
        {
            "frame_start": 1,
            "frame_end": 4,
            "frame_step": 1,
            "resolution_x": 32,
            "resolution_y": 24,
            "samples": 8,
            "output_format": "PNG",
            "priority": 0,
            "seed": 0,
            "max_price_tokens": "0.000001",
        },
    )
    assert response.status_code == 400
    assert "above your maximum" in response.content.decode()
    assert not Job.objects.exists()


def test_accept_and_cancel_through_the_page_move_the_money(client_of, funded_artist, scene):
    client = client_of(funded_artist)
    quote = job_quote(owner=funded_artist, scene=scene)
    page = client.post(reverse("jobs:accept", args=[quote.pk]), follow=True)
    assert "are held in escrow for 4 frames" in page.content.decode()
    assert ledger.user_escrow_total(user=funded_artist) == quote.quote["total"]
    page = client.post(reverse("jobs:cancel", args=[quote.pk]), follow=True)
    assert "4 frames stopped" in page.content.decode()
    assert ledger.user_escrow_total(user=funded_artist) == 0
    assert Job.objects.get(pk=quote.pk).state == JobState.CANCELLED


def test_cancelling_asks_first_and_says_what_it_would_refund(client_of, funded_artist, job, node):
    client = client_of(funded_artist)
    rendered(job.frames.get(number=1), node)
    assert (
        f'href="{reverse("jobs:cancel", args=[job.pk])}"'
        in client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    )
    page = client.get(reverse("jobs:cancel", args=[job.pk]))
    assert page.status_code == 200
    summary = " ".join(page.content.decode().split())
    refund = tokens(3 * job.price_per_frame)
    assert f"3 frames not yet rendered will stop, and <strong>{refund} tokens</strong>" in summary
    assert 'method="post"' in summary and "Yes, cancel the job" in summary
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED  # asking changes nothing
    client.post(reverse("jobs:cancel", args=[job.pk]))
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
    assert "nothing to cancel" in client.get(reverse("jobs:cancel", args=[job.pk])).content.decode()


def test_the_job_page_shows_the_frame_grid_money_and_a_live_preview(client_of, funded_artist, job, node):
    settle_with_result(job.frames.get(number=2), node, seed=2)
    html = client_of(funded_artist).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f'data-poll="{reverse("jobs:fragment", args=[job.pk])}"' in html
    assert 'data-frame="2" data-state="settled"' in html and node.name in html
    assert reverse("jobs:thumb", args=[job.pk, job.frames.get(number=2).pk]) in html
    assert reverse("disputes:new", args=[job.frames.get(number=2).pk]) in html
    assert f'id="job-cost">{tokens(job.price_per_frame)} tokens' in html
    assert f'id="job-escrow">{tokens(3 * job.price_per_frame)} tokens' in html
    fragment = client_of(funded_artist).get(reverse("jobs:fragment", args=[job.pk]))
    assert fragment.status_code == 200 and b"<html" not in fragment.content and b'data-frame="1"' in fragment.content


def test_the_thumbnail_is_served_to_its_owner_only(client_of, funded_artist, outsider, job, node):
    frame = job.frames.get(number=1)
    settle_with_result(frame, node, seed=1)
    url = reverse("jobs:thumb", args=[job.pk, frame.pk])
    response = client_of(funded_artist).get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content == png_bytes(8, 6, seed=1)  # a few tens of kB, sent whole since session 19
    assert client_of(outsider).get(url).status_code == 404


def test_the_download_streams_a_zip_of_the_settled_frames_only(client_of, funded_artist, job, node):
    expected = {n: settle_with_result(job.frames.get(number=n), node, seed=n) for n in (1, 3)}
    rendered(job.frames.get(number=2), node)  # rendered but not yet verified: not delivered
    response = client_of(funded_artist).get(reverse("jobs:download", args=[job.pk]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    names = {n: f"job{job.pk}/frame_{n:06d}.png" for n in expected}
    assert sorted(archive.namelist()) == sorted(names.values())
    for n, data in expected.items():
        info = archive.getinfo(names[n])
        assert info.compress_type == zipfile.ZIP_STORED and archive.read(info) == data


def test_there_is_nothing_to_download_before_a_frame_is_finished(client_of, funded_artist, job):
    assert client_of(funded_artist).get(reverse("jobs:download", args=[job.pk])).status_code == 404


def test_the_list_shows_only_my_jobs(client_of, funded_artist, outsider, job):
    assert job.name in client_of(funded_artist).get(reverse("jobs:list")).content.decode()
    assert f'data-job="{job.pk}"' not in client_of(outsider).get(reverse("jobs:list")).content.decode()


def test_another_artist_gets_404_everywhere_and_changes_nothing(client_of, funded_artist, outsider, job, node, scene):
    frame = job.frames.get(number=1)
    settle_with_result(frame, node, seed=1)
    client = client_of(outsider)
    for url in [
        reverse("jobs:new") + f"?scene={scene.pk}",
        reverse("jobs:detail", args=[job.pk]),
        reverse("jobs:fragment", args=[job.pk]),
        reverse("jobs:download", args=[job.pk]),
        reverse("jobs:cancel", args=[job.pk]),
        reverse("jobs:thumb", args=[job.pk, frame.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("jobs:new") + f"?scene={scene.pk}", {"samples": 1}).status_code == 404
    for url in [reverse("jobs:accept", args=[job.pk]), reverse("jobs:cancel", args=[job.pk])]:
        assert client.post(url).status_code == 404, url
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED
    assert not Job.objects.filter(owner=outsider).exists()


def test_pages_need_a_login(client, job):
    response = client.get(reverse("jobs:detail", args=[job.pk]))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_a_finished_job_page_stops_polling(client_of, funded_artist, job):
    job.frames.update(state=FrameState.FAILED)
    Job.objects.filter(pk=job.pk).update(state=JobState.FAILED)
    html = client_of(funded_artist).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "data-poll" not in html and "Cancel job" not in html


def test_the_quote_shows_the_compute_it_priced_and_why(client_of, artist, scene):
    job = job_quote(owner=artist, scene=scene, priority=50)
    html = client_of(artist).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "reference-seconds per frame" in html and 'id="quote-why"' in html
    assert "the scene&#x27;s own calibration" in html or "the scene's own calibration" in html
    assert 'id="quote-priority">50 · \N{MULTIPLICATION SIGN}1.20 the market rate' in html
    assert "quote-fallback" not in html


def test_an_uncalibrated_quote_says_it_fell_back_to_pixel_samples(client_of, artist, scene):
    scene.report = {k: v for k, v in scene.report.items() if k != "calibration"}
    scene.save(update_fields=["report"])
    job = job_quote(owner=artist, scene=scene)
    html = client_of(artist).get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert job.quote["calibrated"] is False and 'id="quote-fallback"' in html and "no calibration" in html


def _settled_job(artist, node, *, frames: int) -> Job:
    """A running job whose frames were all just settled by `node` (inside their dispute window)."""
    job = make_queued_job(artist, frames=frames)
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING)
    job.frames.update(state=FrameState.SETTLED, node=node, settled_at=timezone.now())
    return job


def test_the_job_page_decides_the_dispute_links_in_queries_that_do_not_grow_with_the_frames(
    client_of, funded_artist, node
):
    client = client_of(funded_artist)
    counted = {}
    for frames in (3, 12):
        job = _settled_job(funded_artist, node, frames=frames)
        disputed, closed, *open_ = job.frames.order_by("number")
        dispute_open(artist=funded_artist, frame_id=disputed.pk, reason="The cube is missing its shadow.")
        closed.settled_at = timezone.now() - dispute_window() - timedelta(minutes=1)
        closed.save(update_fields=["settled_at"])
        for name in ("jobs:detail", "jobs:fragment"):  # the page, and the rows of the poll's first answer
            with CaptureQueriesContext(connection) as queries:
                response = client.get(reverse(name, args=[job.pk]), {"cursor": ""} if name == "jobs:fragment" else {})
            counted[frames, name] = len(queries)
            html = response.json()["parts"]["frames"] if name == "jobs:fragment" else response.content.decode()
            assert f'href="{reverse("disputes:new", args=[disputed.pk])}"' not in html  # disputed once already
            assert f'href="{reverse("disputes:new", args=[closed.pk])}"' not in html  # its window closed
            for frame in open_:
                assert f'href="{reverse("disputes:new", args=[frame.pk])}"' in html
    assert counted[12, "jobs:detail"] == counted[3, "jobs:detail"], counted
    assert counted[12, "jobs:fragment"] == counted[3, "jobs:fragment"], counted
