"""A still split into tiles, for real: quoted and accepted 2x2, the tiles rendered with bpy by two agents
against the live server, settled, stitched by the Celery worker; the stitched still must match a direct
render of the whole frame by the same rule verification uses, and be what the artist downloads."""

import io
import os
import zipfile

import numpy as np
import pytest

import render_kernels
from marketplace import blobs
from marketplace.jobs.models import AssembledFrame, Frame
from marketplace.jobs.services import job_accept, job_quote
from marketplace.jobs.states import FrameState
from marketplace.ledger import selectors as ledger
from marketplace.verification.crops import Crop
from tests.fixtures.farm import demo_scene, wait_for
from tests.fixtures.market import make_node
from tests.fixtures.money import fund
from tests.fixtures.personas import PASSWORD

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
W, H = 96, 64


@pytest.fixture
def still_blend(tmp_path_factory):
    from workers.blend import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("still") / "still.blend", frames=1, resolution=(W, H), samples=8)


def direct_render(blend, manifest: dict) -> np.ndarray:
    """The whole frame rendered in this process with the tiles' own pinned settings."""
    from workers.blend.renderer import Renderer

    out = blend.parent / "direct.png"
    with Renderer(timeout_s=120) as renderer:
        renderer.load(blend, blend.parent)
        renderer.render({**manifest, "border": None}, out)
    return render_kernels.load_image(out)


def test_a_still_split_in_four_is_rendered_by_two_agents_and_stitched_whole(
    farm, still_blend, artist, provider, admin_user, client
):
    fund(artist, 100_000_000)
    job = job_quote(owner=artist, scene=demo_scene(artist, still_blend), tiles=2)
    job = job_accept(job_id=job.pk, owner=artist)
    tiles = list(Frame.objects.filter(job=job).order_by("tile_y", "tile_x"))
    assert [(t.tile_x, t.tile_y, t.tile_w, t.tile_h) for t in tiles] == [
        (0, 0, 48, 32),
        (48, 0, 48, 32),
        (0, 32, 48, 32),
        (48, 32, 48, 32),
    ]
    assert sum(t.price for t in tiles) == job.price_per_frame
    for name, owner in (("a", provider), ("b", admin_user)):
        # Unchecked nodes: tile verification is tested in tests/verification/test_tiles.py; here, the pixels.
        _, token = make_node(owner, name=name, unchecked=True)
        farm.start_agent(f"agent-{name}", token)
    farm.start_celery()
    wait_for(
        lambda: AssembledFrame.objects.filter(job=job).exists(), timeout=240, farm=farm, what="the still assembled"
    )

    tiles = list(Frame.objects.filter(job=job).select_related("node"))
    assert {t.state for t in tiles} == {FrameState.SETTLED}
    assembled = AssembledFrame.objects.get(job=job)
    with blobs.blob_open(assembled.result_key) as f:
        stitched = render_kernels.load_image_bytes(f.read())
    lease = tiles[0].leases.get(kind="render", state="done")
    direct = direct_render(still_blend, lease.manifest)
    assert stitched.shape == direct.shape == (H, W, 4)
    metrics = render_kernels.compare(stitched, direct)
    verdict = render_kernels.verdict(metrics)
    assert verdict.passed, (verdict.reasons, metrics)
    for tile in tiles:  # and every tile is where it belongs
        with blobs.blob_open(tile.result_key) as f:
            piece = render_kernels.load_image_bytes(f.read())
        assert np.array_equal(Crop(tile.tile_x, tile.tile_y, tile.tile_w, tile.tile_h).cut(stitched), piece)

    client.login(username=artist.username, password=PASSWORD)
    response = client.get(f"/jobs/{job.pk}/download.zip")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = [n for n in archive.namelist() if n.endswith(".png")]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["frame_000001.png"]
    assert np.array_equal(render_kernels.load_image_bytes(archive.read(names[0])), stitched)
    assert ledger.ledger_total() == 0
