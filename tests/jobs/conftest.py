import io

import pytest

from marketplace import blobs
from marketplace.jobs.models import Frame
from marketplace.jobs.services import frame_settle
from marketplace.jobs.states import FrameState
from marketplace.scenes.models import Scene
from tests.fixtures.market import make_node, make_scene, png_bytes

M = 1_000_000
# A 2-second calibration render of a 20x15, 8-sample crop: 2400 units, 0.3 s of it overhead; 0.5 s to load.
CALIBRATION = {
    "seconds": 2.0,
    "width": 20,
    "height": 15,
    "samples": 8,
    "frame": 1,
    "device": "CPU",
    "overhead_seconds": 0.3,
    "load_seconds": 0.5,
}


def calibrated_scene(owner, **report) -> Scene:
    scene = make_scene(owner)
    scene.report = {**scene.report, "calibration": dict(CALIBRATION), **report}
    scene.save(update_fields=["report"])
    return scene


def settle_with_result(frame: Frame, node, *, seed: int) -> bytes:
    """Give a frame a stored result and thumbnail, then settle it; returns the result's bytes."""
    data = png_bytes(32, 24, seed=seed)
    rendered(frame, node)
    blobs.blob_put(key=frame.result_key, fileobj=io.BytesIO(data))
    thumb = f"thumbs/test-frame{frame.pk}.png"
    blobs.blob_put(key=thumb, fileobj=io.BytesIO(png_bytes(8, 6, seed=seed)))
    Frame.objects.filter(pk=frame.pk).update(thumbnail_key=thumb)
    assert frame_settle(frame_id=frame.pk, node_id=node.pk)
    return data


def rendered(frame: Frame, node) -> Frame:
    """Put a frame where an agent's accepted report leaves it."""
    Frame.objects.filter(pk=frame.pk).update(
        state=FrameState.RENDERED, node=node, result_key=f"results/f{frame.pk}.png"
    )
    frame.refresh_from_db()
    return frame


@pytest.fixture
def scene(artist) -> Scene:
    return calibrated_scene(artist)


@pytest.fixture
def node(provider):
    return make_node(provider)[0]
