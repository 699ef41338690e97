import pytest

from marketplace.jobs import pricing
from marketplace.jobs.models import Job
from marketplace.jobs.services import JobNotFound, JobRefused, job_quote
from marketplace.jobs.states import JobState
from marketplace.nodes.models import WorkerNode
from marketplace.payments.models import TopUp
from marketplace.scenes.models import Scene
from tests.fixtures.market import make_node
from tests.jobs.conftest import calibrated_scene

pytestmark = pytest.mark.django_db


def test_a_quote_takes_its_defaults_from_the_scene_report(artist, scene):
    job = job_quote(owner=artist, scene=scene)
    assert job.state == JobState.QUOTED and job.owner == artist and job.name == scene.name
    assert (job.frame_start, job.frame_end, job.frame_step) == (1, 4, 1)
    assert (job.resolution_x, job.resolution_y, job.samples) == (32, 24, 8)
    assert job.quote["frames"] == 4 and job.quote["work_units_per_frame"] == 32 * 24 * 8
    # Priced by its calibrated compute (issue 11), no longer by pixel-samples.
    reference_ms = pricing.calibration_from_report(scene.report).reference_ms(32 * 24 * 8)
    assert job.quote["reference_ms_per_frame"] == reference_ms
    assert job.price_per_frame == job.quote["price_per_frame"] == pricing.price_per_frame(reference_ms)
    assert job.quote["total"] == 4 * job.price_per_frame
    assert job.quote["calibrated"] is True
    assert job.frames.count() == 0  # frames exist only once accepted


def test_the_effective_resolution_is_the_default(artist):
    scene = calibrated_scene(
        artist,
        resolution_x=1920,
        resolution_y=1080,
        resolution_percentage=50,
        effective_width=960,
        effective_height=540,
    )
    job = job_quote(owner=artist, scene=scene)
    assert (job.resolution_x, job.resolution_y) == (960, 540)


def test_overrides_replace_the_scene_settings(artist, scene):
    job = job_quote(
        owner=artist,
        scene=scene.pk,
        name=" shot 3 ",
        frame_start=10,
        frame_end=20,
        frame_step=5,
        resolution_x=64,
        resolution_y=48,
        samples=16,
        output_format="OPEN_EXR",
        priority=5,
        seed=42,
        max_price_per_frame=10**9,
    )
    assert job.name == "shot 3" and job.frame_numbers == [10, 15, 20]
    assert (job.resolution_x, job.resolution_y, job.samples, job.seed, job.priority) == (64, 48, 16, 42, 5)
    assert job.output_format == Job.Output.EXR and job.quote["frames"] == 3


def test_more_pixels_or_samples_never_cost_less(artist, scene):
    small = job_quote(owner=artist, scene=scene, resolution_x=640, resolution_y=360, samples=32)
    wide = job_quote(owner=artist, scene=scene, resolution_x=1280, resolution_y=360, samples=32)
    deep = job_quote(owner=artist, scene=scene, resolution_x=640, resolution_y=360, samples=64)
    assert small.price_per_frame < wide.price_per_frame
    assert small.price_per_frame < deep.price_per_frame


def test_the_estimate_uses_idle_nodes_when_there_are_some(artist, provider, scene):
    alone = job_quote(owner=artist, scene=scene)
    assert alone.quote["idle_nodes"] == 0 and "no idle capacity right now" in alone.quote["capacity_note"]
    node, _ = make_node(provider)
    WorkerNode.objects.filter(pk=node.pk).update(bench_score=1e9)
    helped = job_quote(owner=artist, scene=scene)
    assert helped.quote["idle_nodes"] == 1
    assert helped.quote["estimated_seconds"] < alone.quote["estimated_seconds"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"resolution_x": 8193}, "resolution_x must be between 4 and 8192"),
        ({"resolution_y": 3}, "resolution_y must be between 4 and 8192"),
        ({"samples": 0}, "samples must be between 1 and 4096"),
        ({"samples": 4097}, "samples must be between 1 and 4096"),
        ({"frame_start": 1, "frame_end": 10_001}, "10001 frames is more than the limit of 10000"),
        ({"frame_start": 5, "frame_end": 4}, "frame_end (4) is before frame_start (5)"),
        ({"frame_step": 0}, "frame_step must be between 1"),
        ({"frame_start": -1}, "frame_start must be between 0"),
        ({"samples": "64"}, "samples must be a whole number"),
        ({"samples": True}, "samples must be a whole number"),
        ({"output_format": "JPEG"}, "output_format must be one of PNG, OPEN_EXR"),
        ({"priority": 101}, "priority must be between 0 and 100"),
        ({"max_price_per_frame": -1}, "max_price_per_frame must be between 0"),
        ({"use_denoising": "yes"}, "use_denoising must be true or false"),
    ],
)
def test_it_refuses_bad_settings_and_stores_nothing(artist, scene, override, message):
    with pytest.raises(JobRefused) as exc:
        job_quote(owner=artist, scene=scene, **override)
    assert message in str(exc.value)
    assert not Job.objects.exists()


def test_the_limits_are_the_scenes_apps_own(artist, scene, settings):
    settings.SCENE_MAX_SIDE = 1000
    settings.SCENE_MAX_FRAMES = 10
    with pytest.raises(JobRefused, match="resolution_y must be between 4 and 1000, got 1001"):
        job_quote(owner=artist, scene=scene, resolution_y=1001)
    with pytest.raises(JobRefused, match="11 frames is more than the limit of 10"):
        job_quote(owner=artist, scene=scene, frame_start=1, frame_end=11)
    assert not Job.objects.exists()
    assert job_quote(owner=artist, scene=scene, resolution_y=1000, frame_end=10).resolution_y == 1000


def test_denoising_follows_the_scene_unless_overridden(artist):
    scene = calibrated_scene(artist, use_denoising=True)
    assert job_quote(owner=artist, scene=scene).use_denoising is True
    assert job_quote(owner=artist, scene=scene, use_denoising=False).use_denoising is False


def test_it_refuses_a_scene_whose_own_settings_are_over_the_limits(artist):
    scene = calibrated_scene(artist, effective_width=16384)
    with pytest.raises(JobRefused, match=r"resolution_x must be between 4 and 8192, got 16384 \(the scene's own"):
        job_quote(owner=artist, scene=scene)
    assert job_quote(owner=artist, scene=scene, resolution_x=4096).resolution_x == 4096


def test_it_refuses_a_price_over_the_artists_maximum(artist, scene):
    price = job_quote(owner=artist, scene=scene).price_per_frame
    with pytest.raises(JobRefused, match="above your maximum"):
        job_quote(owner=artist, scene=scene, max_price_per_frame=price - 1)
    assert job_quote(owner=artist, scene=scene, max_price_per_frame=price).price_per_frame == price
    assert Job.objects.count() == 2


@pytest.mark.parametrize("status", [Scene.Status.INSPECTING, Scene.Status.REFUSED])
def test_it_refuses_a_scene_that_is_not_ready(artist, scene, status):
    Scene.objects.filter(pk=scene.pk).update(status=status, refusal="no camera")
    with pytest.raises(JobRefused, match="not ready to render"):
        job_quote(owner=artist, scene=scene.pk)
    assert not Job.objects.exists()


def test_another_artists_scene_is_not_found(outsider, scene):
    with pytest.raises(JobNotFound):
        job_quote(owner=outsider, scene=scene.pk)
    with pytest.raises(JobNotFound):
        job_quote(owner=outsider, scene=scene)  # passing the object does not bypass the owner check
    with pytest.raises(JobNotFound):
        job_quote(owner=outsider, scene=999_999)
    assert not Job.objects.exists()


def test_a_provider_cannot_order_renders(provider):
    scene = calibrated_scene(provider)
    with pytest.raises(JobRefused, match="only artist accounts"):
        job_quote(owner=provider, scene=scene)


def test_a_frozen_wallet_gets_no_new_quote(artist, scene):
    TopUp.objects.create(
        user=artist,
        amount_cents=100,
        currency="usd",
        tokens_micro=10,
        provider="dev",
        clawed_back_micro=5,
        unrecovered_micro=5,
    )
    with pytest.raises(JobRefused, match="wallet owes tokens"):
        job_quote(owner=artist, scene=scene)
    assert not Job.objects.exists()


def test_no_float_reaches_the_ledger_from_a_compute_price(artist, settings):
    """Calibration seconds are floats; the price, the tiles' shares, the frames and every posting are integers."""
    from django.conf import settings as django_settings

    from marketplace.jobs.services import job_accept
    from marketplace.ledger.models import Posting
    from tests.fixtures.money import fund

    settings.JOBS_PRIORITY_PREMIUM_BPS = 37
    scene = calibrated_scene(
        artist,
        calibration={
            "seconds": 0.7777777,
            "width": 21,
            "height": 13,
            "samples": 7,
            "overhead_seconds": 0.1234567,
            "load_seconds": 0.333,
        },
    )
    fund(artist, 10**6 * django_settings.MICRO)
    job = job_quote(
        owner=artist,
        scene=scene,
        frame_start=1,
        frame_end=1,
        resolution_x=333,
        resolution_y=211,
        samples=13,
        priority=7,
        tiles=3,
    )
    assert type(job.price_per_frame) is int and all(type(p) is int for p in job.quote["tile_prices"])
    job_accept(job_id=job.pk, owner=artist)
    frames = list(job.frames.all())
    assert sum(f.price for f in frames) == job.price_per_frame and all(type(f.price) is int for f in frames)
    amounts = list(
        Posting.objects.filter(transaction__idempotency_key=f"hold:job:{job.pk}").values_list("amount", flat=True)
    )
    assert (
        amounts
        and all(type(a) is int for a in amounts)
        and sorted(abs(a) for a in amounts) == [job.price_per_frame, job.price_per_frame]
    )
