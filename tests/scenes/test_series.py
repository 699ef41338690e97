"""A scene renders with the Blender series that saved it: inspection picks and pins the series, quotes keep it,
and only nodes with that series' runtime (and verifiers of it) get its frames."""

from __future__ import annotations

import io

import pytest

from marketplace.dispatch import services as dispatch
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.services import job_quote
from marketplace.scenes.inspection import inspect_upload
from marketplace.verification import services as verification
from tests.fixtures.market import make_node, make_queued_job, make_scene
from tests.fixtures.series import save_demo_with

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def blend_45(series_runtimes, tmp_path_factory):
    return save_demo_with(
        series_runtimes["4.5"], tmp_path_factory.mktemp("s45") / "shot.blend", frames=3, resolution=(64, 36), samples=4
    )


def inspect(path) -> object:
    return inspect_upload(fileobj=io.BytesIO(path.read_bytes()), kind="blend", blend_path=path.name)


def test_a_file_saved_by_45_is_inspected_and_calibrated_by_45_and_pinned_to_it(blend_45):
    found = inspect(blend_45)
    assert found.accepted, found.refusal
    assert found.report["blender_series"] == "4.5"
    assert found.report["blender_version"].startswith("4.5.")  # inspection itself ran in the 4.5 runtime
    assert found.report["blender_version_saved"] == "4.5"
    assert found.report["calibration"]["seconds"] > 0
    assert not any("saved with" in w for w in found.warnings)


def test_a_market_with_only_its_own_series_renders_a_45_file_with_50_and_says_so(blend_45, settings, tmp_path):
    settings.SCENE_RUNTIMES_CACHE_DIR = str(tmp_path)  # no extra runtimes: 5.0 only
    found = inspect(blend_45)
    assert found.accepted, found.refusal
    assert found.report["blender_series"] == "5.0"
    assert any("saved with Blender 4.5" in w and "Blender 5.0" in w for w in found.warnings), found.warnings


def test_a_file_older_than_the_oldest_series_is_refused_before_blender_opens_it(blend_45, tmp_path):
    old = tmp_path / "old.blend"
    old.write_bytes(blend_45.read_bytes().replace(b"BLENDER-v405", b"BLENDER-v279", 1))
    found = inspect(old)
    assert not found.accepted
    assert "saved with Blender 2.79" in found.refusal and "Blender 4.2 LTS or newer" in found.refusal
    assert "/" not in found.refusal  # no server path in what the artist reads


@pytest.mark.django_db
def test_the_quote_pins_the_scenes_series(artist):
    scene = make_scene(artist)
    scene.report = {**scene.report, "blender_series": "4.5"}
    scene.save()
    assert job_quote(owner=artist, scene=scene).blender_series == "4.5"


@pytest.mark.django_db
def test_a_node_without_the_jobs_series_never_gets_its_frames(funded_artist, provider):
    scene = make_scene(funded_artist)
    scene.report = {**scene.report, "blender_series": "4.5"}
    scene.save()
    job = make_queued_job(funded_artist, frames=2, scene=scene)
    assert job.blender_series == "4.5"
    make_node(provider, name="only-50", unchecked=True)
    assert dispatch.match_frames() == 0
    assert not FrameLease.objects.exists()
    node, _ = make_node(provider, name="has-45", unchecked=True, series=["4.5", "5.0"])
    assert dispatch.match_frames() == 1
    lease = FrameLease.objects.get()
    assert lease.node == node and lease.manifest["blender_series"] == "4.5"


@pytest.mark.django_db
def test_verify_crops_go_only_to_verifiers_with_the_jobs_series(funded_artist, provider, admin_user):
    scene = make_scene(funded_artist)
    scene.report = {**scene.report, "blender_series": "4.5"}
    scene.save()
    job = make_queued_job(funded_artist, frames=1, scene=scene)
    frame = Frame.objects.get(job=job)
    crop = {"x": 0, "y": 0, "w": 8, "h": 8}
    make_node(admin_user, name="other-provider-50", unchecked=True)
    assert verification.crop_lease_create(frame_id=frame.pk, crop=crop, exclude_owner_id=provider.pk) is None
    verifier, _ = make_node(admin_user, name="other-provider-45", unchecked=True, series=["4.5"])
    delivery = verification.crop_lease_create(frame_id=frame.pk, crop=crop, exclude_owner_id=provider.pk)
    assert delivery is not None and delivery.node_id == verifier.pk
    assert FrameLease.objects.get(pk=delivery.lease_id).manifest["blender_series"] == "4.5"


@pytest.mark.django_db
def test_hello_records_the_agents_runtimes_and_ignores_unknown_series(provider):
    node, _ = make_node(provider, series=["5.3", "4.5", "9.9", "5.0"])
    assert node.series == ["4.5", "5.0", "5.3"]
    old_agent, _ = make_node(provider, name="old")  # says only its bpy version
    assert old_agent.series == ["5.0"]
