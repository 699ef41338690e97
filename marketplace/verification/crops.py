"""The crop-check decision path, free of Django so that tests and benches run exactly what the market runs.

    crops = crops_choose(width=W, height=H)              # positions from `secrets`, chosen after the report
    result = crop_judge(candidate=frame_image, reference=crop_image, crop=crops[0])

Which image of the candidate is compared, and in which format the verifier renders its crop, so that an
honest render matches exactly (measured on Blender 5.0.1, docs/verification.md):

* denoising off, PNG output: the crop is rendered to PNG too. Blender writes PNG through the scene's view
  transform (AgX by default), so quantising a linear EXR crop with a plain sRGB curve is off by up to
  62/255; rendering the crop to PNG (dither 0, as the renderer pins) lets Blender do the same conversion,
  and crop and frame then match bit for bit, whatever view transform, look or curves the scene uses.
* EXR output: the crop is rendered to EXR; the float crop equals the frame's region bit for bit.
* denoising on: the denoiser needs the whole image, so a denoised crop differs from the denoised frame
  (up to 18/255). The renderer writes the pre-denoise pass (`<name>.noisy.exr`), which equals a render
  without the denoiser bit for bit; the crop is rendered without denoising to EXR and compared with the
  candidate's noisy pass.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from marketplace.dispatch.manifests import Crop, noisy_key
from marketplace.verification import policy
from render_kernels import compare, verdict
from render_kernels.decision import tolerances_for

# render_kernels' SSIM uses an 11x11 Gaussian window: no crop may be thinner than that.
MIN_SIDE = 11
_random = secrets.SystemRandom()


def verifiable(*, width: int, height: int) -> bool:
    return width >= MIN_SIDE and height >= MIN_SIDE


def _span(size: int, length: int, stratum: int, strata: int) -> tuple[int, int]:
    """A random [start, end) of about `length` pixels inside [0, size), from one stratum of the starts.

    The unclipped starts are every offset where the span overlaps the frame; they are cut into `strata`
    equal parts and the start is uniform within part `stratum`. The span is clipped to the frame, and a
    clipped span thinner than MIN_SIDE is widened inwards. Over the strata every start is equally likely,
    so every pixel, the frame's edges included, is covered at least `length / (size + length - 1)` of the
    time: with starts limited to [0, size - length] the edges would almost never be checked, and a cheat
    could render them wrong for free.
    """
    length = min(size, max(MIN_SIDE, length))
    starts = size + length - 1
    first, last = stratum * starts // strata, (stratum + 1) * starts // strata
    start = 1 - length + first + _random.randrange(max(1, last - first))
    lo, hi = max(0, start), min(size, start + length)
    if hi - lo < MIN_SIDE:
        lo, hi = (0, MIN_SIDE) if lo == 0 else (size - MIN_SIDE, size)
    return lo, hi


def crops_choose(*, width: int, height: int, count: int | None = None, fraction: float | None = None) -> list[Crop]:
    """`count` crops (default CROPS_PER_CHECK) of about `fraction` (CROP_FRACTION) of the frame each, with
    the frame's aspect ratio, at positions drawn from the operating system's CSPRNG. Never tell them to the
    node that renders the frame; give them to other providers' nodes only after its result was committed.

    Stratified: the frame's possible crop positions are cut into a grid of at least `count` cells (3x3
    for 8 crops) and each crop is drawn inside its own randomly chosen cell. Positions stay unpredictable
    and every pixel as likely to be checked, but a check always looks at every part of the frame, so a
    result that is wrong in one half or one corner cannot hope that all crops land elsewhere.
    """
    if not verifiable(width=width, height=height):
        raise ValueError(f"a {width}x{height} frame is smaller than the {MIN_SIDE}x{MIN_SIDE} comparison window")
    count = count or policy.CROPS_PER_CHECK
    side = math.sqrt(fraction or policy.CROP_FRACTION)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cells = _random.sample([(i, j) for i in range(columns) for j in range(rows)], count)
    crops = []
    for column, row in cells:
        x0, x1 = _span(width, round(width * side), column, columns)
        y0, y1 = _span(height, round(height * side), row, rows)
        crops.append(Crop(x0, y0, x1 - x0, y1 - y0))
    return crops


def candidate_key(*, result_key: str, manifest: dict[str, Any]) -> str:
    """The image of a result that crops are compared with: its pre-denoise pass when it was denoised."""
    return noisy_key(result_key) if manifest.get("use_denoising") else result_key


def candidate_of(lease: Any) -> str:
    """The candidate image of a render lease (a FrameLease): its frozen pre-denoise pass when it was denoised
    (recorded at the report), else its frozen result."""
    if lease.manifest.get("use_denoising") and getattr(lease, "noisy_key", ""):
        return lease.noisy_key
    return candidate_key(result_key=lease.result_key, manifest=lease.manifest)


@dataclass(frozen=True)
class CropResult:
    passed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "matches"


class UnusableReference(ValueError):
    """The verifier's crop cannot be compared (wrong size, channels, NaN): it says nothing about the
    candidate, so someone else must re-render the crop."""


def crop_judge(
    *,
    candidate: np.ndarray,
    reference: np.ndarray,
    crop: Crop,
    candidate_device: str = "CPU",
    verifier_device: str = "CPU",
) -> CropResult:
    """Compare the crop's region of the candidate frame with the verifier's re-rendered crop (float HxWxC),
    by the rule for the two renders' Cycles backends (render_kernels.decision.tolerances_for), which the
    metrics record as "tolerance".

    A candidate that cannot be compared (too small, NaN, too few channels) fails; an unusable reference
    raises UnusableReference.
    """
    if reference.ndim != 3 or reference.shape[:2] != (crop.h, crop.w) or not np.isfinite(reference).all():
        raise UnusableReference(f"the re-rendered crop is {reference.shape[1::-1]}, not a finite {crop.w}x{crop.h}")
    region = crop.cut(candidate)
    if region.shape[:2] != (crop.h, crop.w):
        return CropResult(False, reasons=[f"the frame does not contain the crop {crop.as_dict()}"])
    if not np.isfinite(region).all():
        return CropResult(False, reasons=["the frame contains NaN or infinite pixels"])
    channels = min(region.shape[2], reference.shape[2])
    if channels < 3 and region.shape[2] != reference.shape[2]:
        return CropResult(
            False, reasons=[f"the frame has {region.shape[2]} channels, the re-render {reference.shape[2]}"]
        )
    # RGB is what the artist gets; alpha is compared too when both images have it.
    rule, tolerances = tolerances_for(candidate_device=candidate_device, verifier_device=verifier_device)
    metrics = compare(region[..., :channels], reference[..., :channels], tolerances=tolerances)
    decision = verdict(metrics, tolerances=tolerances)
    return CropResult(
        passed=decision.passed, metrics={**metrics.to_dict(), "tolerance": rule}, reasons=list(decision.reasons)
    )
