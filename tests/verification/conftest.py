import io

import pytest
from PIL import Image

from marketplace.dispatch import services as dispatch
from marketplace.dispatch.manifests import Crop, crop_manifest
from marketplace.verification import platform
from tests.verification.helpers import truth_image


@pytest.fixture
def manual_matching(monkeypatch):
    """Matching runs only when a test leases explicitly (every report kicks it after commit otherwise), so a
    requeued frame stays visible as QUEUED."""
    monkeypatch.setattr(dispatch, "_after_commit_match", lambda: None)


@pytest.fixture
def platform_truth(monkeypatch):
    """The platform verifier renders crops of `platform_truth.image` (set it in the test) instead of Blender.

    Tests of the real platform render are in test_platform.py; everything else only needs its answer.
    """

    class Truth:
        image = None
        renders: list[dict] = []

        def render(self, *, scene: dict, manifest: dict) -> bytes:
            self.renders.append(manifest)
            x, y, w, h = manifest["border"]
            buf = io.BytesIO()
            Image.fromarray(Crop(x, y, w, h).cut(self.image)).save(buf, format="PNG")
            return buf.getvalue()

    truth = Truth()
    truth.renders = []
    monkeypatch.setattr(platform, "render", truth.render)
    return truth


@pytest.fixture
def crop_leases_in_comparable_format(monkeypatch):
    """Verify leases as requested from dispatch: `crop_manifest` of the frame's manifest (the crop rendered
    in the format it is compared in, without denoising)."""
    real = dispatch.manifest_for

    def manifest_for(frame, *, node, crop=None):
        manifest = real(frame, node=node)
        return crop_manifest(manifest, Crop.from_dict(crop)) if crop else manifest

    monkeypatch.setattr(dispatch, "manifest_for", manifest_for)


@pytest.fixture
def truth(platform_truth):
    """The true image (`helpers.truth_image()`), of which the platform verifier renders its crops."""
    platform_truth.image = truth_image()
    return platform_truth.image
