"""Device-aware verification: a GPU-rendered frame is re-rendered on its own Cycles backend when a verifier has
it, else by the platform on CPU and judged by Blender's own cross-device render-test rule, recorded per crop."""

import numpy as np
import pytest

from marketplace.jobs.models import Frame
from marketplace.verification import services as verification
from marketplace.verification.crops import Crop, crop_judge
from render_kernels.decision import CROSS_BACKEND, DEFAULT, tolerances_for
from tests.fixtures.market import make_node, make_queued_job

CROP = Crop(0, 0, 64, 64)


def frame_pair(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = rng.random((64, 64, 3), dtype=np.float32)
    return frame, frame.copy()


def test_the_backends_choose_the_rule():
    assert tolerances_for(candidate_device="CPU", verifier_device="cpu") == ("same-backend", DEFAULT)
    assert tolerances_for(candidate_device="OPTIX", verifier_device="OPTIX") == ("same-backend", DEFAULT)
    assert tolerances_for(candidate_device="CUDA", verifier_device="CPU") == ("cross-backend", CROSS_BACKEND)
    assert CROSS_BACKEND.pixel_tol == 0.016 and CROSS_BACKEND.max_frac_over_tol == 0.01  # Blender's render tests


def test_a_few_diverging_pixels_fail_the_same_backend_rule_but_pass_across_backends():
    frame, reference = frame_pair()
    diverged = np.random.default_rng(2).choice(64 * 64, size=30, replace=False)  # 0.7 % of the crop
    reference.reshape(-1, 3)[diverged] = np.clip(reference.reshape(-1, 3)[diverged] + 0.2, 0, 1)
    same = crop_judge(candidate=frame, reference=reference, crop=CROP, candidate_device="CUDA", verifier_device="CUDA")
    cross = crop_judge(candidate=frame, reference=reference, crop=CROP, candidate_device="CUDA", verifier_device="CPU")
    assert not same.passed and same.metrics["tolerance"] == "same-backend"
    assert cross.passed, cross.reasons
    assert cross.metrics["tolerance"] == "cross-backend"


@pytest.mark.parametrize("cheat", ["patch", "noise", "blank"])
def test_cheats_fail_across_backends_too(cheat):
    frame, reference = frame_pair()
    rng = np.random.default_rng(3)
    if cheat == "patch":  # 3 % of the pixels replaced
        frame[:8, :15] = 0.5
    elif cheat == "noise":
        frame = np.clip(frame + rng.normal(0, 0.03, frame.shape).astype(np.float32), 0, 1)
    else:
        frame = np.zeros_like(frame)
    result = crop_judge(
        candidate=frame, reference=reference, crop=CROP, candidate_device="OPTIX", verifier_device="CPU"
    )
    assert not result.passed and result.metrics["tolerance"] == "cross-backend"


@pytest.mark.django_db
def test_a_gpu_frames_crop_goes_to_a_verifier_on_the_same_backend_only(funded_artist, provider, admin_user):
    job = make_queued_job(funded_artist, frames=1)
    frame = Frame.objects.get(job=job)
    crop = {"x": 0, "y": 0, "w": 8, "h": 8}
    make_node(admin_user, name="cpu-verifier", unchecked=True)
    make_node(admin_user, name="hip-verifier", device="HIP", vram_mb=16000, unchecked=True)
    assert (
        verification.crop_lease_create(frame_id=frame.pk, crop=crop, exclude_owner_id=provider.pk, device="CUDA")
        is None
    )  # none on CUDA: the platform will render it
    cuda, _ = make_node(admin_user, name="cuda-verifier", device="CUDA", vram_mb=12000, unchecked=True)
    delivery = verification.crop_lease_create(frame_id=frame.pk, crop=crop, exclude_owner_id=provider.pk, device="CUDA")
    assert delivery is not None and delivery.node_id == cuda.pk
