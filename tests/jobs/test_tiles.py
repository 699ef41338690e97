"""Splitting a still into tiles: the grid, quoting and accepting a tiled still (prices, escrow), refusals,
assembling the settled tiles into the whole image (PNG 8/16-bit, EXR), downloads, pages and the API."""

import io
import zipfile
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import render_kernels
from marketplace import blobs
from marketplace.jobs import conf, pricing, selectors
from marketplace.jobs.assembly import AssemblyError, stitch
from marketplace.jobs.models import AssembledFrame, Frame, Job
from marketplace.jobs.services import JobRefused, frame_assemble, frame_settle, job_accept, job_quote
from marketplace.jobs.states import FrameState, JobState
from marketplace.jobs.tasks import assemble_missing
from marketplace.jobs.tiles import tile_rects
from marketplace.ledger import selectors as ledger
from marketplace.ledger.services import hold_escrow
from tests.fixtures.api import bearer
from tests.jobs.conftest import calibrated_scene

W, H = 99, 67  # odd on purpose: a 2x2 grid has tiles of 49/50 x 33/34 px


# --- the grid -------------------------------------------------------------------------------


@given(width=st.integers(1, 300), height=st.integers(1, 300), side=st.integers(1, 8))
def test_the_grid_covers_every_pixel_exactly_once_in_row_major_order(width, height, side):
    if side > min(width, height):
        with pytest.raises(ValueError, match="cannot split"):
            tile_rects(width=width, height=height, side=side)
        return
    rects = tile_rects(width=width, height=height, side=side)
    cover = np.zeros((height, width), np.int32)
    for x, y, w, h in rects:
        cover[y : y + h, x : x + w] += 1
    assert len(rects) == side * side and (cover == 1).all()
    assert rects == sorted(rects, key=lambda r: (r[1], r[0]))  # row-major from the top-left
    assert rects[0][:2] == (0, 0)
    assert max(r[2] for r in rects) - min(r[2] for r in rects) <= 1
    assert max(r[3] for r in rects) - min(r[3] for r in rects) <= 1


def test_a_grid_of_one_is_the_whole_frame():
    assert tile_rects(width=640, height=480, side=1) == [(0, 0, 640, 480)]


def test_the_remainder_is_spread_over_the_grid():
    assert [r[2] for r in tile_rects(width=10, height=4, side=4)[:4]] == [2, 3, 2, 3]


@given(price=st.integers(0, 10**12), side=st.integers(1, 8), width=st.integers(64, 5000), height=st.integers(64, 5000))
def test_tile_prices_sum_exactly_to_the_price_in_proportion_to_area(price, side, width, height):
    rects = tile_rects(width=width, height=height, side=side)
    prices = pricing.tile_prices(price=price, rects=rects)
    assert sum(prices) == price and len(prices) == len(rects)
    for (_, _, w, h), share in zip(rects, prices, strict=True):  # within 1 micro-token of the exact share
        assert abs(share * width * height - price * w * h) < width * height


# --- quoting and accepting ------------------------------------------------------------------


def still_quote(owner, *, side: int, width: int = W, height: int = H, output_format: str = "PNG", **more) -> Job:
    scene = calibrated_scene(owner)
    frames = {"frame_start": 1, "frame_end": 1, **more}
    return job_quote(
        owner=owner,
        scene=scene,
        resolution_x=width,
        resolution_y=height,
        samples=64,
        tiles=side,
        output_format=output_format,
        **frames,
    )


@pytest.mark.django_db
def test_a_tiled_still_costs_what_the_whole_still_costs(artist):
    whole = still_quote(artist, side=1)
    tiled = still_quote(artist, side=2)
    assert tiled.tile_side == 2 and tiled.quote["tiles"] == 4 and whole.quote["tiles"] == 1
    assert tiled.price_per_frame == whole.price_per_frame and tiled.quote["total"] == whole.quote["total"]
    assert sum(tiled.quote["tile_prices"]) == tiled.price_per_frame and whole.quote["tile_prices"] == []
    # One node renders four tiles one after another, paying the per-frame overhead four times.
    assert tiled.quote["estimated_seconds"] > whole.quote["estimated_seconds"]


@pytest.mark.django_db
def test_no_tile_of_a_cheap_still_pays_less_than_a_frame(artist, settings):
    settings.JOBS_MIN_PRICE_PER_FRAME = 5_000
    # Priced by compute since issue 11 (was 640,000 pixel-samples x 10,000 per megasample = 6,400): 0.3 s +
    # 640,000 x 1.7 / 2400 s = 453.634 reference-seconds at 50,000 micro-tokens an hour.
    settings.JOBS_MARKET_RATE_MICRO_PER_REFERENCE_HOUR = 50_000
    whole = still_quote(artist, side=1, width=100, height=100)
    tiled = still_quote(artist, side=3, width=100, height=100)  # tiles of 33-34 x 33-34 px
    assert whole.price_per_frame == 6_301  # above one minimum, below nine
    prices = tiled.quote["tile_prices"]
    assert min(prices) >= 5_000 and sum(prices) == tiled.price_per_frame
    # The least it can cost: the smallest tile (33 x 33) gets exactly its share of the minimum.
    assert tiled.price_per_frame == -(-5_000 * 100 * 100 // (33 * 33))


@pytest.mark.django_db
def test_tiles_spread_over_idle_nodes_shorten_the_estimate(artist, provider):
    from marketplace.nodes.models import WorkerNode
    from tests.fixtures.market import make_node

    for i in range(4):
        node, _ = make_node(provider, name=f"rig{i}", unchecked=True)  # trusted: a provider may add more than 3
        WorkerNode.objects.filter(pk=node.pk).update(bench_score=1.7e6)
    whole = job_quote(
        owner=artist,
        scene=calibrated_scene(artist),
        frame_start=1,
        frame_end=1,
        resolution_x=640,
        resolution_y=480,
        samples=64,
    )
    tiled = job_quote(
        owner=artist,
        scene=calibrated_scene(artist),
        frame_start=1,
        frame_end=1,
        resolution_x=640,
        resolution_y=480,
        samples=64,
        tiles=2,
    )
    assert tiled.quote["idle_nodes"] == 4
    assert tiled.quote["estimated_seconds"] < whole.quote["estimated_seconds"] / 2


@pytest.mark.django_db
@pytest.mark.parametrize(("side", "width", "height"), [(2, W, H), (3, 131, 97)])
def test_accepting_a_tiled_still_queues_one_frame_per_tile_whose_prices_sum_to_the_still(
    funded_artist, side, width, height
):
    quote = still_quote(funded_artist, side=side, width=width, height=height)
    wallet_before = selectors.wallet_balance(user=funded_artist)
    job = job_accept(job_id=quote.pk, owner=funded_artist)
    frames = list(selectors.frames_of(job=job))
    assert [(f.tile_x, f.tile_y, f.tile_w, f.tile_h) for f in frames] == tile_rects(
        width=width, height=height, side=side
    )
    assert {f.number for f in frames} == {1} and {f.state for f in frames} == {FrameState.QUEUED}
    assert [f.price for f in frames] == quote.quote["tile_prices"]
    assert sum(f.price for f in frames) == job.price_per_frame == quote.quote["total"]
    assert ledger.user_escrow_total(user=funded_artist) == quote.quote["total"]
    assert selectors.wallet_balance(user=funded_artist) == wallet_before - quote.quote["total"]


@pytest.mark.django_db
def test_an_untiled_job_still_gets_one_whole_frame_per_number(funded_artist, scene):
    job = job_accept(job_id=job_quote(owner=funded_artist, scene=scene).pk, owner=funded_artist)
    assert list(job.frames.values_list("tile_x", "tile_w")) == [(None, None)] * 4 and job.tile_side == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("asked", "why"),
    [
        ({"frame_end": 4, "tiles": 2}, "only a still can be split into tiles, and this job has 4 frames"),
        ({"frame_end": 1, "tiles": 2, "use_denoising": True}, "a denoised image cannot be split into tiles"),
        (
            {"frame_end": 1, "tiles": 2, "resolution_x": 99, "resolution_y": 63},
            "tiles of 49\N{MULTIPLICATION SIGN}31 px, under the 32 px a tile needs on each side: do not split it",
        ),
        (
            {"frame_end": 1, "tiles": 4, "resolution_x": 100, "resolution_y": 100},
            "split it into at most 3\N{MULTIPLICATION SIGN}3 tiles",
        ),
        ({"frame_end": 1, "tiles": 0}, "tiles must be between 1 and 8, got 0"),
        ({"frame_end": 1, "tiles": 9}, "tiles must be between 1 and 8, got 9"),
        ({"frame_end": 1, "tiles": "2"}, "tiles must be a whole number, got '2'"),
        ({"frame_end": 1, "tiles": 2.0}, "tiles must be a whole number, got 2.0"),
        ({"frame_end": 1, "tiles": True}, "tiles must be a whole number, got True"),
    ],
)
def test_a_tiling_that_cannot_work_is_refused_and_stores_nothing(artist, asked, why):
    render = {"frame_start": 1, "resolution_x": 640, "resolution_y": 480, "use_denoising": False, **asked}
    with pytest.raises(JobRefused) as refused:
        job_quote(owner=artist, scene=calibrated_scene(artist), **render)
    assert why in str(refused.value)
    assert not Job.objects.exists() and not Frame.objects.exists()


@pytest.mark.django_db
def test_a_scene_that_denoises_cannot_be_tiled_unless_denoising_is_turned_off(artist):
    scene = calibrated_scene(artist, use_denoising=True)
    render = {"frame_start": 1, "frame_end": 1, "resolution_x": 640, "resolution_y": 480, "tiles": 2}
    with pytest.raises(JobRefused, match="denoiser needs the whole image"):
        job_quote(owner=artist, scene=scene, **render)
    assert job_quote(owner=artist, scene=scene, use_denoising=False, **render).tile_side == 2


@pytest.mark.django_db
def test_the_tile_limits_follow_the_settings(artist, settings):
    settings.JOBS_MAX_TILE_SIDE = 2
    with pytest.raises(JobRefused, match="between 1 and 2, got 3"):
        still_quote(artist, side=3, width=640, height=480)
    settings.JOBS_MIN_TILE_SIDE = 11
    assert still_quote(artist, side=2, width=24, height=24).tile_side == 2  # 12-px tiles
    settings.JOBS_MIN_TILE_SIDE = 10
    with pytest.raises(ImproperlyConfigured, match="11-px SSIM window"):
        conf.MIN_TILE_SIDE  # noqa: B018


@pytest.mark.django_db
def test_the_database_refuses_tiles_for_several_frames_or_denoising(artist):
    job = still_quote(artist, side=2, frame_end=5, frame_step=10)  # frames 1 to 5 every 10: the still at 1
    assert job.frame_numbers == [1]
    for change in ({"frame_step": 4}, {"use_denoising": True}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Job.objects.filter(pk=job.pk).update(**change)


# --- assembling -----------------------------------------------------------------------------


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png16(pixels: np.ndarray, tmp: Path) -> bytes:
    render_kernels.save_png(tmp / "tile16.png", pixels)  # uint16: written at 16 bits
    return (tmp / "tile16.png").read_bytes()


def exr(pixels: np.ndarray, tmp: Path) -> bytes:
    channels = {c: np.ascontiguousarray(pixels[:, :, i]) for i, c in enumerate("RGBA")}
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, channels) as f:
        f.write(str(tmp / "tile.exr"))
    return (tmp / "tile.exr").read_bytes()


def source(channels: int = 3, *, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return (rng.random((H, W, channels)) * 4).astype(np.float32)  # HDR values above 1 too
    return rng.integers(0, np.iinfo(dtype).max, (H, W, channels), dtype=dtype, endpoint=True)


def deliver(tile: Frame, node, data: bytes, *, version: int = 1, ext: str = "png") -> None:
    """Store a tile's result and leave it where an accepted report does (RENDERED)."""
    key = f"results/job{tile.job_id}/frame{tile.pk}/v{version}.{ext}"
    blobs.blob_put(key=key, fileobj=io.BytesIO(data))
    Frame.objects.filter(pk=tile.pk).update(state=FrameState.RENDERED, node=node, result_key=key)


def settle(tile: Frame, node, capture) -> None:
    with capture(execute=True):  # runs frame_settle's after-commit hooks: the job check and the assembly task
        assert frame_settle(frame_id=tile.pk, node_id=node.pk)


def cut(image: np.ndarray, tile: Frame) -> np.ndarray:
    return np.ascontiguousarray(image[tile.tile_y : tile.tile_y + tile.tile_h, tile.tile_x : tile.tile_x + tile.tile_w])


def stored_image(key: str) -> np.ndarray:
    with blobs.blob_open(key) as f, Image.open(f) as im:
        return np.asarray(im).copy()


@pytest.fixture
def still(funded_artist) -> Job:
    """An accepted 2x2 tiled PNG still of W x H."""
    return job_accept(job_id=still_quote(funded_artist, side=2).pk, owner=funded_artist)


def tiles_of(job: Job) -> list[Frame]:
    return selectors.tiles_of(job_id=job.pk, number=1)


@pytest.mark.django_db
@pytest.mark.parametrize("channels", [3, 4])
def test_the_settled_tiles_assemble_into_exactly_the_source_png(
    still, node, channels, django_capture_on_commit_callbacks
):
    image = source(channels)
    for tile in tiles_of(still):
        deliver(tile, node, png(cut(image, tile)))
        settle(tile, node, django_capture_on_commit_callbacks)
    assembled = AssembledFrame.objects.get(job=still, number=1)
    assert assembled.result_key.endswith(".png")
    assert assembled.tile_keys == [t.result_key for t in tiles_of(still)]
    result = stored_image(assembled.result_key)
    assert result.dtype == np.uint8 and result.shape == image.shape
    np.testing.assert_array_equal(result, image)
    thumb = stored_image(assembled.thumbnail_key)
    assert thumb.shape[1] == W and thumb.shape[2] == channels  # small images are not scaled up


@pytest.mark.django_db
def test_sixteen_bit_png_tiles_assemble_at_sixteen_bits(still, node, tmp_path, django_capture_on_commit_callbacks):
    image = source(4, dtype=np.uint16)
    for tile in tiles_of(still):
        deliver(tile, node, png16(cut(image, tile), tmp_path))
        settle(tile, node, django_capture_on_commit_callbacks)
    key = AssembledFrame.objects.get(job=still).result_key
    (tmp_path / "whole.png").write_bytes(b"".join(blobs.blob_chunks(key)))
    loaded = render_kernels.load_image(tmp_path / "whole.png")
    np.testing.assert_array_equal(np.rint(loaded * 65535).astype(np.uint16), image)


@pytest.mark.django_db
def test_exr_tiles_assemble_into_exactly_the_source_exr(
    funded_artist, node, tmp_path, django_capture_on_commit_callbacks
):
    job = job_accept(job_id=still_quote(funded_artist, side=2, output_format="OPEN_EXR").pk, owner=funded_artist)
    image = source(4, dtype=np.float32)
    for tile in tiles_of(job):
        deliver(tile, node, exr(cut(image, tile), tmp_path), ext="exr")
        settle(tile, node, django_capture_on_commit_callbacks)
    key = AssembledFrame.objects.get(job=job).result_key
    assert key.endswith(".exr")
    (tmp_path / "whole.exr").write_bytes(b"".join(blobs.blob_chunks(key)))
    np.testing.assert_array_equal(render_kernels.load_image(tmp_path / "whole.exr"), image)


@pytest.mark.django_db
def test_assembly_waits_for_the_last_tile_and_the_job_does_not_wait_for_assembly(
    still, node, django_capture_on_commit_callbacks
):
    image = source()
    first, *rest, last = tiles_of(still)
    for tile in (first, *rest):
        deliver(tile, node, png(cut(image, tile)))
        settle(tile, node, django_capture_on_commit_callbacks)
    assert frame_assemble(job_id=still.pk, number=1) is None and not AssembledFrame.objects.exists()
    assert Job.objects.get(pk=still.pk).state == JobState.QUEUED
    deliver(last, node, png(cut(image, last)))
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        assert frame_settle(frame_id=last.pk, node_id=node.pk)
    assert len(hooks) == 3  # the job check, the payment's log line, the assembly
    hooks[0]()  # only the job check: the job is done and paid before any assembly
    assert Job.objects.get(pk=still.pk).state == JobState.DONE and ledger.user_escrow_total(user=still.owner) == 0
    assert not AssembledFrame.objects.exists()
    hooks[2]()  # the assembly
    assert AssembledFrame.objects.filter(job=still, number=1).exists()


@pytest.mark.django_db
def test_settling_an_untiled_frame_enqueues_no_assembly(funded_artist, scene, node, django_capture_on_commit_callbacks):
    job = job_accept(job_id=job_quote(owner=funded_artist, scene=scene).pk, owner=funded_artist)
    frame = job.frames.get(number=1)
    deliver(frame, node, png(source()[:24, :32]))
    with django_capture_on_commit_callbacks() as hooks:
        frame_settle(frame_id=frame.pk, node_id=node.pk)
    assert len(hooks) == 2  # the job check and the payment's log line: no assembly


@pytest.mark.django_db
def test_assembling_twice_changes_nothing(still, node, django_capture_on_commit_callbacks):
    image = source()
    for tile in tiles_of(still):
        deliver(tile, node, png(cut(image, tile)))
        settle(tile, node, django_capture_on_commit_callbacks)
    first = AssembledFrame.objects.get()
    again = frame_assemble(job_id=still.pk, number=1)
    assert (again.pk, again.result_key, again.assembled_at) == (first.pk, first.result_key, first.assembled_at)
    assert frame_assemble(job_id=still.pk, number=2) is None  # no such frame


@pytest.mark.django_db
def test_a_tile_rendered_again_after_a_dispute_is_assembled_again(still, node, django_capture_on_commit_callbacks):
    image = source(4)
    tiles = tiles_of(still)
    for tile in tiles:
        deliver(tile, node, png(cut(image, tile)))
        settle(tile, node, django_capture_on_commit_callbacks)
    old = AssembledFrame.objects.get()
    # An upheld dispute holds the tile's price again, sends it back to the queue with its result cleared and
    # re-opens the job (see disputes.services._uphold).
    disputed = tiles[3]
    hold_escrow(artist=still.owner, job_ref=still.escrow_ref, amount=disputed.price, key="dispute:1:rehold")
    Frame.objects.filter(pk=disputed.pk).update(state=FrameState.QUEUED, result_key="", node=None)
    Job.objects.filter(pk=still.pk).update(state=JobState.RUNNING)
    assert selectors.current_assemblies(job=still) == {}  # the old image is not delivered any more
    fixed = image.copy()
    fixed[disputed.tile_y :, disputed.tile_x :] = 255 - fixed[disputed.tile_y :, disputed.tile_x :]
    deliver(disputed, node, png(cut(fixed, disputed)), version=2)
    settle(disputed, node, django_capture_on_commit_callbacks)
    new = AssembledFrame.objects.get()
    assert new.pk == old.pk and new.result_key != old.result_key and new.assembled_at > old.assembled_at
    np.testing.assert_array_equal(stored_image(new.result_key), fixed)
    assert not blobs.blob_exists(old.result_key) and not blobs.blob_exists(old.thumbnail_key)


@pytest.mark.django_db
def test_a_tile_that_cannot_be_stitched_leaves_the_job_done_and_unassembled(
    still, node, caplog, django_capture_on_commit_callbacks
):
    for tile in tiles_of(still):
        deliver(tile, node, png(source()[:10, :10]))  # the wrong size (uploads are checked; this is a bug)
        settle(tile, node, django_capture_on_commit_callbacks)
    assert Job.objects.get(pk=still.pk).state == JobState.DONE
    assert not AssembledFrame.objects.exists() and "cannot be assembled" in caplog.text
    with pytest.raises(AssemblyError, match="the tile at x=0, y=0 is 10x10 px, not 49x33"):
        frame_assemble(job_id=still.pk, number=1)


@pytest.mark.parametrize(
    ("tiles", "why"),
    [
        ([((0, 0, 2, 2), b"GIF89a")], "the tile at x=0, y=0: not a PNG image"),
        ([((0, 0, 2, 2), png(np.zeros((2, 2, 3), np.uint8)))], "the tiles do not cover the 4x2 frame"),
        (
            [((0, 0, 2, 2), png(np.zeros((2, 2, 3), np.uint8))), ((1, 0, 2, 2), png(np.zeros((2, 2, 3), np.uint8)))],
            "overlaps another tile",
        ),
        (
            [((0, 0, 2, 2), png(np.zeros((2, 2, 3), np.uint8))), ((2, 0, 2, 2), png(np.zeros((2, 2, 4), np.uint8)))],
            "has 4 channels of 8 bits, the first tile 3 of 8",
        ),
    ],
)
def test_stitching_refuses_tiles_that_do_not_make_the_frame(tiles, why):
    with pytest.raises(AssemblyError, match=why):
        stitch(width=4, height=2, output_format="PNG", tiles=tiles)


@pytest.mark.django_db
def test_the_sweep_assembles_a_still_whose_message_was_lost(still, node):
    image = source()
    for tile in tiles_of(still):  # settled without running the after-commit hooks: the message is lost
        deliver(tile, node, png(cut(image, tile)))
        assert frame_settle(frame_id=tile.pk, node_id=node.pk)
    assert selectors.stills_unassembled(settled_since=still.created_at) == [(still.pk, 1)]
    assert assemble_missing() == 1
    assert AssembledFrame.objects.filter(job=still, number=1).exists()
    assert selectors.stills_unassembled(settled_since=still.created_at) == []
    assert assemble_missing() == 0


# --- downloads, pages and the API -----------------------------------------------------------


def zip_names(response) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.django_db
def test_the_download_has_the_assembled_still_not_its_tiles(still, node, client, django_capture_on_commit_callbacks):
    client.force_login(still.owner)
    url = reverse("jobs:download", args=[still.pk])
    image = source(4)
    first, *others = tiles_of(still)
    deliver(first, node, png(cut(image, first)))
    settle(first, node, django_capture_on_commit_callbacks)
    # Before the still is whole, what is paid for is delivered as tiles.
    assert list(zip_names(client.get(url))) == [f"job{still.pk}/frame_000001_tile0x0.png"]
    for tile in others:
        deliver(tile, node, png(cut(image, tile)))
        settle(tile, node, django_capture_on_commit_callbacks)
    files = zip_names(client.get(url))
    assert list(files) == [f"job{still.pk}/frame_000001.png"]
    assert files[f"job{still.pk}/frame_000001.png"] == b"".join(
        blobs.blob_chunks(AssembledFrame.objects.get().result_key)
    )
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(files[f"job{still.pk}/frame_000001.png"]))), image)


@pytest.mark.django_db
def test_the_pages_show_the_split_the_tiles_and_the_assembled_still(
    funded_artist, outsider, node, client, django_capture_on_commit_callbacks
):
    client.force_login(funded_artist)
    quote = still_quote(funded_artist, side=2)
    html = client.get(reverse("jobs:detail", args=[quote.pk])).content.decode()
    assert "split into 4 tiles" in html and 'id="quote-tiles"' in html
    page = client.post(reverse("jobs:accept", args=[quote.pk]), follow=True).content.decode()
    assert "are held in escrow for 4 tiles" in page
    job, image = Job.objects.get(pk=quote.pk), source()
    tiles = tiles_of(job)
    for tile in tiles[:3]:
        deliver(tile, node, png(cut(image, tile)))
        settle(tile, node, django_capture_on_commit_callbacks)
    html = client.get(reverse("jobs:fragment", args=[job.pk])).content.decode()
    assert "(tile 49,0: 50\N{MULTIPLICATION SIGN}33 px)" in html and "3 of 4 tiles done" in html
    assert html.count('data-frame="1"') == 4
    deliver(tiles[3], node, png(cut(image, tiles[3])))
    settle(tiles[3], node, django_capture_on_commit_callbacks)
    html = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    thumb = reverse("jobs:still_thumb", args=[job.pk, 1])
    assert f'src="{thumb}?v=' in html and "assembled from its 4 tiles" in html
    assert "Download the assembled image" in html and "data-poll" not in html  # done and assembled: final
    response = client.get(thumb)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    client.force_login(outsider)
    assert client.get(thumb).status_code == 404


@pytest.mark.django_db
def test_the_page_keeps_polling_while_the_still_is_assembled(still, node, client):
    client.force_login(still.owner)
    for tile in tiles_of(still):  # settled, but the assembly has not run yet
        deliver(tile, node, png(cut(source(), tile)))
        assert frame_settle(frame_id=tile.pk, node_id=node.pk)
    Job.objects.filter(pk=still.pk).update(state=JobState.DONE)
    html = client.get(reverse("jobs:detail", args=[still.pk])).content.decode()
    assert "data-poll" in html and "assembling the image" in html


@pytest.mark.django_db
def test_the_new_job_form_splits_a_still_and_the_server_judges_it(artist, client):
    client.force_login(artist)
    scene = calibrated_scene(artist)
    url = reverse("jobs:new") + f"?scene={scene.pk}"
    html = client.get(url).content.decode()
    assert 'name="tiles"' in html and "Split into tiles" in html
    assert '<option value="8">8\N{MULTIPLICATION SIGN}8 = 64 tiles</option>' in html
    form = {
        "frame_start": 1,
        "frame_end": 1,
        "frame_step": 1,
        "resolution_x": 640,
        "resolution_y": 480,
        "samples": 8,
        "output_format": "PNG",
        "priority": 0,
        "seed": 0,
    }
    refused = client.post(url, {**form, "frame_end": 4, "tiles": 2})
    assert refused.status_code == 400 and "only a still can be split into tiles" in refused.content.decode()
    assert client.post(url, {**form, "tiles": 99}).status_code == 400
    assert not Job.objects.exists()
    assert client.post(url, {**form, "tiles": 3}).status_code == 302
    assert Job.objects.get().tile_side == 3


@pytest.mark.django_db
def test_the_api_quotes_a_tiled_still_and_shows_its_tiles(funded_artist, node, django_capture_on_commit_callbacks):
    api = bearer(funded_artist)
    scene = calibrated_scene(funded_artist)
    body = {"scene": scene.pk, "frame_start": 1, "frame_end": 1, "resolution_x": W, "resolution_y": H, "tiles": 2}
    assert api.post("/api/v1/jobs/", {**body, "tiles": "two"}, format="json").status_code == 400
    refused = api.post("/api/v1/jobs/", {**body, "frame_end": 2}, format="json")
    assert refused.status_code == 400 and "only a still" in refused.json()["detail"]
    quote = api.post("/api/v1/jobs/", body, format="json")
    assert quote.status_code == 201, quote.content
    assert quote.json()["tile_side"] == 2 and quote.json()["quote"]["tiles"] == 4
    accepted = api.post(f"/api/v1/jobs/{quote.json()['id']}/accept/").json()
    rects = [(f["tile_x"], f["tile_y"], f["tile_w"], f["tile_h"]) for f in accepted["frames"]]
    assert rects == tile_rects(width=W, height=H, side=2)
    assert sum(f["price"] for f in accepted["frames"]) == quote.json()["quote"]["total"]
    assert accepted["stills"] == [{"number": 1, "tiles": 4, "settled": 0, "assembled_at": None}]
    job = Job.objects.get(pk=quote.json()["id"])
    for tile in tiles_of(job):
        deliver(tile, node, png(cut(source(), tile)))
        settle(tile, node, django_capture_on_commit_callbacks)
    still = api.get(f"/api/v1/jobs/{job.pk}/").json()["stills"][0]
    assert still["settled"] == 4 and still["assembled_at"] is not None
