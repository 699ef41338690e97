"""Visual evidence for admins, made with render_kernels from the stored images.

Each verification crop of the disputed result (`verification.models.CropCheck`, decided by another
provider's node or by the platform's own render) is shown as its reference, the crop the verifier
re-rendered, next to the same region (x, y, w, h; y from the top) of the candidate the check compared it
with: the delivered frame, or its pre-denoise pass for a denoised frame. Without crops there is no
reference: the page shows the frame alone and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import render_kernels
from marketplace import blobs
from marketplace.dispatch import conf as dispatch_conf
from marketplace.dispatch.manifests import expected_size
from marketplace.errors import NotFound
from marketplace.verification.crops import candidate_of
from marketplace.verification.models import CropCheck

PREVIEW_MAX_SIDE = 1024
CROP_MAX_SIDE = 512


class EvidenceUnavailable(NotFound):
    """An image that cannot be loaded or compared (missing file, size or channel mismatch)."""


def image_load(key: str, *, sha256: str = "", size: tuple[int, int] | None = None) -> np.ndarray:
    """A stored image (PNG or EXR, local or S3) as render_kernels' float32 HxWxC array, checked against the
    digest it was frozen under (`sha256`, or the one its key names) and, from its header, `size`."""
    if not key or not blobs.blob_exists(key):
        raise EvidenceUnavailable(f"the image {key or '(none)'} is not in storage")
    try:
        data = blobs.blob_read_checked(key, sha256=sha256, max_bytes=dispatch_conf.RESULT_MAX_BYTES)
    except blobs.DigestMismatch as exc:  # logged as an event by blobs; never shown as evidence
        raise EvidenceUnavailable(f"refused: {exc}") from exc
    try:
        return render_kernels.image_from_bytes(data, size=size)
    except render_kernels.ImageError as exc:
        raise EvidenceUnavailable(str(exc)) from exc


def _comparable(candidate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # A PNG frame may carry alpha where the re-render does not (or the reverse): compare colour only.
    channels = min(candidate.shape[2], reference.shape[2], 3)
    return candidate[:, :, :channels], reference[:, :, :channels]


def _region(crop: CropCheck) -> tuple[int, int, int, int]:
    try:
        return int(crop.crop["x"]), int(crop.crop["y"]), int(crop.crop["w"]), int(crop.crop["h"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EvidenceUnavailable(f"crop check {crop.pk} has no usable region: {crop.crop!r}") from exc


def compared_key(crop: CropCheck) -> str:
    """The candidate image the check compared the crop with."""
    return candidate_of(crop.frame_check.render_lease)


def compared_image(crop: CropCheck) -> np.ndarray:
    """The candidate image of the crop's check, digest- and size-checked."""
    lease = crop.frame_check.render_lease
    return image_load(compared_key(crop), size=expected_size(lease.manifest))


def crop_pair(*, candidate_image: np.ndarray, crop: CropCheck) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, reference): the candidate's region and the verifier's re-render of it, same size and channels."""
    _, _, w, h = _region(crop)
    candidate_image, reference = _comparable(candidate_image, image_load(crop.reference_key, size=(w, h)))
    try:
        # render_kernels cuts the region out of its second image when the first is already region-sized.
        reference, candidate = render_kernels.crop_pair(reference, candidate_image, _region(crop))
    except ValueError as exc:
        raise EvidenceUnavailable(f"cannot compare crop {crop.crop}: {exc}") from exc
    return candidate, reference


@dataclass(frozen=True)
class CropEvidence:
    crop: CropCheck
    comparable: bool  # both images load and line up: the side-by-side and the heatmap can be shown
    metrics: dict | None
    error: str


def _one_crop(candidates: dict[str, np.ndarray | EvidenceUnavailable], crop: CropCheck) -> CropEvidence:
    key = compared_key(crop)
    if key not in candidates:
        try:
            candidates[key] = compared_image(crop)
        except EvidenceUnavailable as exc:
            candidates[key] = exc
    if isinstance(candidates[key], EvidenceUnavailable):
        return CropEvidence(crop, False, None, str(candidates[key]))
    try:
        candidate, reference = crop_pair(candidate_image=candidates[key], crop=crop)
    except EvidenceUnavailable as exc:
        return CropEvidence(crop, False, None, str(exc))
    try:
        return CropEvidence(crop, True, render_kernels.compare(candidate, reference).to_dict(), "")
    except ValueError as exc:  # e.g. a crop smaller than the SSIM window
        return CropEvidence(crop, True, None, f"no metrics for this crop: {exc}")


def crop_evidence(*, crops: list[CropCheck]) -> list[CropEvidence]:
    """Metrics of every verification crop against its candidate (errors shown, never raised)."""
    candidates: dict[str, np.ndarray | EvidenceUnavailable] = {}  # each candidate image is loaded once
    return [_one_crop(candidates, crop) for crop in crops]


CROP_VIEWS = ("candidate", "reference", "heatmap")


def crop_view_png(*, crop: CropCheck, view: str) -> bytes:
    candidate, reference = crop_pair(candidate_image=compared_image(crop), crop=crop)
    if view == "candidate":
        image = candidate
    elif view == "reference":
        image = reference
    else:
        image = render_kernels.diff_heatmap(candidate, reference)
    return render_kernels.thumbnail_png(image, max_side=CROP_MAX_SIDE)
