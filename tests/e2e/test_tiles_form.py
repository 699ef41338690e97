"""The new-job form in real Chromium: "Split into tiles" appears only for a still, and a 2x2 split quotes
four tiles at the whole still's price."""

import pytest

from marketplace.jobs import conf
from marketplace.jobs.models import Job
from marketplace.jobs.services import job_quote
from tests.fixtures.farm import demo_scene

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def scene(artist, tmp_path_factory):
    from workers.blend import make_demo_scene

    blend = make_demo_scene(tmp_path_factory.mktemp("demo") / "demo.blend", frames=4, resolution=(96, 64), samples=8)
    return demo_scene(artist, blend)


def test_the_tiles_choice_follows_the_frame_range_and_quotes_tiles(login, live_server, artist, scene):
    page = login(artist)

    page.goto(f"{live_server.url}/jobs/new/?scene={scene.pk}")
    assert page.input_value("#id_frame_end") == "4"
    assert page.is_hidden("#id_tiles")  # four frames: not a still
    page.fill("#id_frame_end", "1")
    assert page.is_visible("#id_tiles")
    page.select_option("#id_tiles", "2")
    page.click("text=Get a quote")
    page.wait_for_selector("#quote-tiles")
    assert "split into 4 tiles (2\N{MULTIPLICATION SIGN}2)" in page.inner_text("#quote-tiles")
    job = Job.objects.get(owner=artist, tile_side=2)
    assert job.tile_side == 2 and job.quote["tiles"] == 4 and job.frame_start == job.frame_end == 1
    whole = job_quote(owner=artist, scene=scene, frame_start=1, frame_end=1)  # the same still, not split
    # This still is cheap: the whole one pays the per-frame minimum, and so does each tile.
    assert whole.price_per_frame == conf.MIN_PRICE_PER_FRAME
    assert job.quote["tile_prices"] == [conf.MIN_PRICE_PER_FRAME] * 4  # four equal 48x32 tiles
    assert job.price_per_frame == sum(job.quote["tile_prices"])
