import pytest

from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.scenes.models import Scene
from tests.fixtures.market import make_node, make_scene

M = 1_000_000
# A 2-second calibration render of a 20x15, 8-sample crop: 2400 units, 0.3 s of it overhead.
CALIBRATION = {"seconds": 2.0, "width": 20, "height": 15, "samples": 8, "frame": 1, "device": "CPU",
               "overhead_seconds": 0.3}


def calibrated_scene(owner, **report) -> Scene:
    scene = make_scene(owner)
    scene.report = {**scene.report, "calibration": dict(CALIBRATION), **report}
    scene.save(update_fields=["report"])
    return scene


def rendered(frame: Frame, node) -> Frame:
    """Put a frame where an agent's accepted report leaves it."""
    Frame.objects.filter(pk=frame.pk).update(state=FrameState.RENDERED, node=node,
                                             result_key=f"results/f{frame.pk}.png")
    frame.refresh_from_db()
    return frame


@pytest.fixture
def scene(artist) -> Scene:
    return calibrated_scene(artist)


@pytest.fixture
def node(provider):
    return make_node(provider)[0]
