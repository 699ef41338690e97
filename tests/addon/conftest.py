"""The add-on under test is the built one (`make addon`'s legacy zip), installed by Blender's own installer and
driven headless in a bpy subprocess (tests/addon/_blender.py) against pytest-django's live server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from marketplace.accounts.services import api_token_create

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("_blender.py")


@pytest.fixture(scope="session")
def addon_zips(tmp_path_factory) -> tuple[Path, Path]:
    """(extension zip, legacy zip), built as `make addon` builds them."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_addon import build

    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def addon_zip(addon_zips) -> Path:
    return addon_zips[1]


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """The demo scene, tiny: 2 frames of 64x36 at 8 samples (Cycles, a camera, one mesh)."""
    from workers.blend import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("demo") / "demo.blend", frames=2, resolution=(64, 36), samples=8)


@pytest.fixture
def media(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
    }
    return root


@pytest.fixture
def project(tmp_path) -> dict:
    """Where the textured scene goes: project/ (scene.blend, textures/), library/ beside it, elsewhere/."""
    return {"project": str(tmp_path / "work" / "project"), "outside": str(tmp_path / "elsewhere")}


def token_of(user) -> str:
    return api_token_create(user=user, name="blender")[1]


class Blender:
    """Runs a plan of steps in a fresh headless Blender with the add-on installed; returns each step's record."""

    def __init__(self, tmp: Path, addon_zip: Path) -> None:
        self.tmp, self.addon_zip, self.runs = tmp, addon_zip, 0

    def run(
        self, steps: list[dict], *, timeout: float = 900, install: str = "legacy", addon_zip: Path | None = None
    ) -> list[dict]:
        self.runs += 1
        plan = self.tmp / f"plan{self.runs}.json"
        out = self.tmp / f"out{self.runs}.json"
        plan.write_text(json.dumps({"addon_zip": str(addon_zip or self.addon_zip), "steps": steps, "install": install}))
        env = dict(os.environ, BLENDER_USER_RESOURCES=str(self.tmp / "blender-user"), PYTHONPATH=str(ROOT))
        proc = subprocess.run(
            [sys.executable, str(DRIVER), str(plan), str(out)],
            check=False,
            env=env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            pytest.fail(f"Blender driver failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


@pytest.fixture
def blender(tmp_path, addon_zip) -> Blender:
    return Blender(tmp_path, addon_zip)
