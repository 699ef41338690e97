"""Honest and dishonest render agents, and the marketplace's crop-check decision path run against them.

Used by tests/verification/test_cheats.py (a few trials) and tests/bench/bench_cheats.py (the table in
docs/verification.md). No Django: the decision path is `marketplace.verification.crops`, exactly what
`verification.services` runs: crops drawn with `crops_choose` after the candidate exists, each crop
re-rendered by a separate verifier Blender with `crop_manifest` (the candidate's pinned manifest, its
comparable format), then `crop_judge` (render_kernels.compare + verdict). A trial detects the agent when
any crop fails.

Each agent maps a job's pinned manifest to the image the marketplace would compare: the uploaded frame,
or its pre-denoise pass for a denoised job. Renders are cached (a deterministic cheat uploads the same
image every time); what varies between trials is where the crops land, and the noise of the noise cheat.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from marketplace.dispatch.manifests import crop_manifest
from marketplace.verification.crops import Crop, CropResult, crop_judge, crops_choose
from render_kernels import load_image, save_png
from workers.blend import Renderer, make_demo_scene

JOB: dict[str, Any] = {
    "frame": 5,
    "samples": 16,
    "seed": 7,
    "resolution_x": 64,
    "resolution_y": 48,
    "device": "CPU",
    "threads": 0,
    "file_format": "PNG",
    "use_denoising": False,
    "camera": "Camera",
}
# The second camera of the test scene: a cheat renders through it instead of the pinned one.
OTHER_CAMERA = "Camera.001"
_ADD_CAMERA = """
import sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False)
cam = bpy.data.objects["Camera"]
twin = cam.copy()
twin.data = cam.data.copy()
twin.name = "Camera.001"
twin.location.x += 0.4
twin.location.z += 0.3
bpy.context.scene.collection.objects.link(twin)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])
"""


def make_scene(directory: Path) -> Path:
    """The demo scene with a second camera (the manifest sets size and samples)."""
    blend = make_demo_scene(directory / "scene.blend", frames=24, resolution=(64, 48), samples=16)
    subprocess.run([sys.executable, "-c", _ADD_CAMERA, str(blend)], check=True, capture_output=True, timeout=120)
    return blend


@dataclass(frozen=True)
class Agent:
    name: str
    honest: bool
    # (lab, trial) -> the candidate image the marketplace compares crops with
    candidate: Callable[[Lab, int], np.ndarray]
    job: dict[str, Any] = field(default_factory=dict)  # the job's own settings (output format, denoising)


@dataclass(frozen=True)
class Trial:
    detected: bool
    crops: list[tuple[Crop, CropResult]]


class Lab:
    """Two sandboxed Blenders on the same scene: the agent's and the verifier's; `job` is the pinned manifest."""

    def __init__(self, blend: Path, *, width: int = 64, height: int = 48) -> None:
        self.job = {**JOB, "resolution_x": width, "resolution_y": height}
        self.width, self.height = width, height
        self.blend = blend
        self.tmp = Path(tempfile.mkdtemp(prefix="cheats-"))
        self.agent = Renderer(memory_mb=4096, timeout_s=120)
        self.verifier = Renderer(memory_mb=4096, timeout_s=120)
        self.agent.load(blend, blend.parent)
        self.verifier.load(blend, blend.parent)
        self._cache: dict[str, np.ndarray] = {}
        self.renders = {"agent": 0, "verifier": 0}

    def close(self) -> None:
        self.agent.close()
        self.verifier.close()

    def render(self, manifest: dict[str, Any], *, noisy: bool = False) -> np.ndarray:
        """The agent's render of `manifest` as the marketplace loads it (cached per manifest)."""
        key = repr(sorted(manifest.items())) + str(noisy)
        if key not in self._cache:
            ext = "exr" if manifest["file_format"] == "OPEN_EXR" else "png"
            stats = self.agent.render(manifest, self.tmp / f"agent-{len(self._cache)}.{ext}")
            self.renders["agent"] += 1
            self._cache[key] = load_image(stats["noisy_path"] if noisy else stats["path"])
        return self._cache[key]

    def upload(self, pixels: np.ndarray) -> np.ndarray:
        """What a cheat's doctored 8-bit frame looks like once uploaded as PNG and decoded by the market."""
        path = self.tmp / "upload.png"
        save_png(path, pixels)
        return load_image(path)

    def trial(self, agent: Agent, trial: int) -> Trial:
        job = {**self.job, **agent.job}
        candidate = agent.candidate(self, trial)
        results = []
        for crop in crops_choose(width=self.width, height=self.height):  # drawn after the candidate exists
            manifest = crop_manifest(job, crop)
            ext = "exr" if manifest["file_format"] == "OPEN_EXR" else "png"
            stats = self.verifier.render(manifest, self.tmp / f"crop.{ext}")
            self.renders["verifier"] += 1
            results.append((crop, crop_judge(candidate=candidate, reference=load_image(stats["path"]), crop=crop)))
        return Trial(detected=any(not r.passed for _, r in results), crops=results)


# --- the agents -----------------------------------------------------------------------------


def _honest(**job: Any) -> Callable[[Lab, int], np.ndarray]:
    def candidate(lab: Lab, trial: int) -> np.ndarray:
        return lab.render({**lab.job, **job}, noisy=bool(job.get("use_denoising")))

    return candidate


def _rendered(**changes: Any) -> Callable[[Lab, int], np.ndarray]:
    """A cheat that renders something other than the pinned manifest."""

    def candidate(lab: Lab, trial: int) -> np.ndarray:
        return lab.render({**lab.job, **changes})

    return candidate


def _doctored(edit: Callable[[np.ndarray, int], np.ndarray]) -> Callable[[Lab, int], np.ndarray]:
    """A cheat that edits an honest 8-bit frame (uint8 RGBA) before uploading it."""

    def candidate(lab: Lab, trial: int) -> np.ndarray:
        honest = np.rint(lab.render(lab.job) * 255).astype(np.uint8)
        return lab.upload(edit(honest, trial))

    return candidate


def _noise(pixels: np.ndarray, trial: int) -> np.ndarray:
    rng = np.random.default_rng(trial)
    noisy = pixels.astype(np.float32)
    noisy[..., :3] += rng.normal(0, 3.2, noisy[..., :3].shape)  # ~38 dB PSNR
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _blur(pixels: np.ndarray, trial: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(1.0)))


def _blank(pixels: np.ndarray, trial: int) -> np.ndarray:
    out = np.empty_like(pixels)
    out[...] = pixels.reshape(-1, pixels.shape[2]).mean(axis=0).round().astype(np.uint8)
    return out


def _black(pixels: np.ndarray, trial: int) -> np.ndarray:
    out = np.zeros_like(pixels)
    out[..., 3] = 255
    return out


def _half_missing(pixels: np.ndarray, trial: int) -> np.ndarray:
    out = pixels.copy()
    out[out.shape[0] // 2 :] = 0  # the bottom half never rendered (transparent black)
    return out


def _upscaled(lab: Lab, trial: int) -> np.ndarray:
    small = lab.render({**lab.job, "resolution_x": lab.width // 2, "resolution_y": lab.height // 2})
    pixels = np.rint(small * 255).astype(np.uint8)
    return lab.upload(np.asarray(Image.fromarray(pixels).resize((lab.width, lab.height), Image.Resampling.BICUBIC)))


def _crops_guessed(lab: Lab, trial: int) -> np.ndarray:
    """Correct only in the middle half of the frame (where it guesses crops land), 1 sample elsewhere."""
    w, h = round(lab.width * 0.5**0.5), round(lab.height * 0.5**0.5)
    x, y = (lab.width - w) // 2, (lab.height - h) // 2
    frame = lab.render({**lab.job, "samples": 1}).copy()
    frame[y : y + h, x : x + w] = lab.render({**lab.job, "border": [x, y, w, h]})
    return frame


AGENTS: list[Agent] = [
    Agent("honest", True, _honest()),
    Agent("honest, 1 thread", True, _honest(threads=1)),
    Agent("honest, 2 threads", True, _honest(threads=2)),
    Agent("honest, EXR output", True, _honest(file_format="OPEN_EXR"), job={"file_format": "OPEN_EXR"}),
    Agent("honest, denoised (noisy pass)", True, _honest(use_denoising=True), job={"use_denoising": True}),
    Agent("fewer samples (half)", False, _rendered(samples=JOB["samples"] // 2)),
    Agent("lower resolution, upscaled", False, _upscaled),
    Agent("previous frame re-uploaded", False, _rendered(frame=JOB["frame"] - 1)),
    Agent("noise added (38 dB)", False, _doctored(_noise)),
    Agent("blurred", False, _doctored(_blur)),
    Agent("blank (flat colour)", False, _doctored(_blank)),
    Agent("black", False, _doctored(_black)),
    Agent("partial (bottom half missing)", False, _doctored(_half_missing)),
    Agent("different seed", False, _rendered(seed=JOB["seed"] + 1)),
    Agent("different camera", False, _rendered(camera=OTHER_CAMERA)),
    Agent("different frame number", False, _rendered(frame=JOB["frame"] + 7)),
    Agent("correct only where it guesses crops", False, _crops_guessed),
]
