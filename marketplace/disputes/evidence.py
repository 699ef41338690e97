"""Visual evidence for admins, made with render_kernels from the stored images.

The candidate is the disputed frame; the reference of each verification crop is the crop another node
re-rendered (stored on its verify lease), compared with the same region (x, y, w, h; y from the top) cut
from the frame. Without crops there is no reference: the page shows the frame alone and says so.
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

import render_kernels
from marketplace import blobs
from marketplace.dispatch.models import FrameLease
from marketplace.disputes.models import Dispute

PREVIEW_MAX_SIDE = 1024
CROP_MAX_SIDE = 512


class EvidenceUnavailable(Exception):
    """An image that cannot be loaded or compared (missing file, size or channel mismatch)."""


def image_load(key: str) -> np.ndarray:
    """A stored image (PNG or EXR, local or S3) as render_kernels' float32 HxWxC array."""
    if not key or not blobs.blob_exists(key):
        raise EvidenceUnavailable(f"the image {key or '(none)'} is not in storage")
    # render_kernels reads from a path; keep the extension, it picks the decoder.
    with tempfile.NamedTemporaryFile(suffix=PurePosixPath(key).suffix) as tmp:
        for chunk in blobs.blob_chunks(key):
            tmp.write(chunk)
        tmp.flush()
        try:
            return render_kernels.load_image(tmp.name)
        except render_kernels.ImageError as exc:
            raise EvidenceUnavailable(str(exc)) from exc


def png_bytes(image: np.ndarray, *, max_side: int) -> bytes:
    buffer = io.BytesIO()
    # thumbnail() returns uint8, which save_png writes through Pillow (accepts a file object).
    render_kernels.save_png(buffer, render_kernels.thumbnail(image, max_side))
    return buffer.getvalue()


def _comparable(candidate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # A PNG frame may carry alpha where the re-render does not (or the reverse): compare colour only.
    channels = min(candidate.shape[2], reference.shape[2], 3)
    return candidate[:, :, :channels], reference[:, :, :channels]


def _region(lease: FrameLease) -> tuple[int, int, int, int]:
    crop = lease.crop or {}
    try:
        return int(crop["x"]), int(crop["y"]), int(crop["w"]), int(crop["h"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EvidenceUnavailable(f"verify lease {lease.pk} has no usable crop: {crop!r}") from exc


def crop_pair(*, frame_image: np.ndarray, lease: FrameLease) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, reference): the frame's region and the verifier's re-render of it, same size and channels."""
    frame_image, reference = _comparable(frame_image, image_load(lease.result_key))
    try:
        # render_kernels cuts the region out of its second image when the first is already region-sized.
        reference, candidate = render_kernels.crop_pair(reference, frame_image, _region(lease))
    except ValueError as exc:
        raise EvidenceUnavailable(f"cannot compare crop {lease.crop}: {exc}") from exc
    return candidate, reference


@dataclass(frozen=True)
class CropEvidence:
    lease: FrameLease
    comparable: bool  # both images load and line up: the side-by-side and the heatmap can be shown
    metrics: dict | None
    error: str


def _one_crop(frame_image: np.ndarray, lease: FrameLease) -> CropEvidence:
    try:
        candidate, reference = crop_pair(frame_image=frame_image, lease=lease)
    except EvidenceUnavailable as exc:
        return CropEvidence(lease, False, None, str(exc))
    try:
        return CropEvidence(lease, True, render_kernels.compare(candidate, reference).to_dict(), "")
    except ValueError as exc:  # e.g. a crop smaller than the SSIM window
        return CropEvidence(lease, True, None, f"no metrics for this crop: {exc}")


def crop_evidence(*, dispute: Dispute, crops: list[FrameLease]) -> list[CropEvidence]:
    """Metrics of every verification crop against the disputed frame (errors shown, never raised)."""
    if not crops:
        return []
    try:
        frame_image = image_load(dispute.result_key)
    except EvidenceUnavailable as exc:
        return [CropEvidence(lease, False, None, str(exc)) for lease in crops]
    return [_one_crop(frame_image, lease) for lease in crops]


CROP_VIEWS = ("candidate", "reference", "heatmap")


def crop_view_png(*, dispute: Dispute, lease: FrameLease, view: str) -> bytes:
    candidate, reference = crop_pair(frame_image=image_load(dispute.result_key), lease=lease)
    if view == "candidate":
        image = candidate
    elif view == "reference":
        image = reference
    else:
        image = render_kernels.diff_heatmap(candidate, reference)
    return png_bytes(image, max_side=CROP_MAX_SIDE)
