"""The pinned settings a lease renders with, and where its result goes: pure functions of a manifest.

A render lease's manifest is the frame's pinned settings (`dispatch.services.manifest_for`); a verify lease's is
the candidate's own manifest narrowed to a crop (`crop_manifest`), in the format it is compared in (see
verification.crops for why). Free of Django, like verification.crops, which uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Crop:
    """A rectangle in pixels, y from the top (the renderer's border convention)."""

    x: int
    y: int
    w: int
    h: int

    def as_dict(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Crop:
        return cls(int(data["x"]), int(data["y"]), int(data["w"]), int(data["h"]))

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


def crop_format(*, output_format: str, use_denoising: bool) -> str:
    """The file format a verifier renders a crop in: that of the candidate image it is compared with."""
    return "OPEN_EXR" if use_denoising or output_format == "OPEN_EXR" else "PNG"


def noisy_key(result_key: str) -> str:
    """Where a denoised frame's pre-denoise pass is stored, next to the frame (`<stem>.noisy.exr`)."""
    stem = result_key.rsplit(".", 1)[0] if "." in result_key.rsplit("/", 1)[-1] else result_key
    return f"{stem}.noisy.exr"


def image_size(manifest: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of the image a lease renders: its border (a tile of a still, or a crop), else the frame."""
    border = manifest.get("border")
    return (int(border[2]), int(border[3])) if border else (manifest["resolution_x"], manifest["resolution_y"])


def expected_size(manifest: dict[str, Any]) -> tuple[int, int] | None:
    """image_size of a manifest that says it, else None (a lease recorded without its render settings)."""
    return image_size(manifest) if manifest.get("border") or "resolution_x" in manifest else None


def crop_manifest(render_manifest: dict[str, Any], crop: Crop) -> dict[str, Any]:
    """The candidate's own pinned manifest, narrowed to the crop, in the comparable format.

    A crop is in the candidate image's pixels; when the candidate is a tile of a still (its manifest has a
    border), the crop's border in the frame is offset by the tile's corner.
    """
    x0, y0 = (render_manifest.get("border") or (0, 0))[:2]
    return {
        **render_manifest,
        "border": [x0 + crop.x, y0 + crop.y, crop.w, crop.h],
        "file_format": crop_format(
            output_format=render_manifest["file_format"], use_denoising=bool(render_manifest.get("use_denoising"))
        ),
        "use_denoising": False,
    }
