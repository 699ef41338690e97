"""Each extra Blender series end to end: a scene saved by that series is inspected in it, rendered by an agent
that has its runtime, verified by the platform in the same series, and settled; the agent without the
runtime never gets its frames."""

import os

import pytest

from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger import selectors
from marketplace.verification.models import CropCheck
from tests.fixtures.farm import demo_job, wait_for
from tests.fixtures.market import make_node
from tests.fixtures.money import fund
from tests.fixtures.series import EXTRA_SERIES, save_demo_with

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
FRAMES = 2


@pytest.mark.parametrize("series", EXTRA_SERIES)
def test_a_scene_of_each_series_renders_verifies_and_settles_in_that_series(
    series, series_runtimes, farm, artist, provider, admin_user, tmp_path
):
    blend = save_demo_with(
        series_runtimes[series], tmp_path / "scene" / "shot.blend", frames=FRAMES, resolution=(64, 36), samples=4
    )
    fund(artist, 100_000_000)
    job = demo_job(artist, blend, frames=FRAMES, samples=4)
    assert job.blender_series == series and job.scene.report["blender_version"].startswith(f"{series}.")
    without, token_without = make_node(admin_user, name="no-runtime")
    node, token = make_node(provider, name="with-runtime")
    farm.start_celery()
    farm.start_agent("without", token_without)  # 5.0 only: must stay idle
    farm.start_agent("with", token, runtimes={series: series_runtimes[series]})
    wait_for(
        lambda: not Frame.objects.filter(job=job).exclude(state=FrameState.SETTLED).exists(),
        timeout=240,
        farm=farm,
        what=f"all {series} frames settled",
    )
    assert set(Frame.objects.filter(job=job).values_list("node_id", flat=True)) == {node.pk}
    assert not FrameLease.objects.filter(node=without).exists()
    leases = FrameLease.objects.filter(frame__job=job, kind=FrameLease.Kind.RENDER)
    assert {lease.manifest["blender_series"] for lease in leases} == {series}
    # New nodes are checked on every frame: the platform re-rendered crops with the same series and they matched.
    checks = CropCheck.objects.filter(frame_check__frame__job=job)
    assert checks.exists() and set(checks.values_list("state", flat=True)) == {CropCheck.State.PASSED}
    assert selectors.ledger_total() == 0
