"""The long-lived renderer: pinned manifests, determinism, crops, refusals, limits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.blend_factory import BlendFactory, build_cases

# With or without the repo conftest: the session-cached scenes.
from tests.fixtures.manifests import manifest
from workers import logs
from workers.blend import (
    BlendFileError,
    DeviceError,
    Renderer,
    RenderRefused,
    SandboxError,
    list_devices,
)
from workers.blend.images import oiio, read_image
from workers.blend.sandbox import Limits, run_bpy_module

pytest_plugins = ["tests.fixtures.blend_fixtures"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_renderer(blend_factory: BlendFactory) -> Iterator[Renderer]:
    case = blend_factory.get("demo")
    with Renderer(memory_mb=4096, timeout_s=120) as r:
        r.load(case.blend, case.bundle_root)
        yield r


def test_demo_frame_has_the_right_size_and_is_not_blank(demo_renderer: Renderer, tmp_path: Path) -> None:
    out = tmp_path / "frame.png"
    stats = demo_renderer.render(manifest(resolution_x=320, resolution_y=180, file_format="PNG"), out)
    img = read_image(out, raw=True)
    assert img.shape == (180, 320, 4) and img.dtype == np.uint8
    assert img[..., :3].std() > 10 and len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 500
    assert (stats["width"], stats["height"], stats["device"], stats["blender_version"]) == (
        320,
        180,
        "CPU",
        "5.0.1",
    )
    assert stats["seconds"] > 0 and stats["peak_rss_mb"] > 50 and stats["path"] == str(out)


def test_thread_count_does_not_change_a_bit(demo_renderer: Renderer, tmp_path: Path) -> None:
    one = demo_renderer.render(manifest(threads=1, samples=16), tmp_path / "t1.exr")
    two = demo_renderer.render(manifest(threads=2, samples=16), tmp_path / "t2.exr")
    a, b = read_image(Path(one["path"])), read_image(Path(two["path"]))
    assert a.dtype == np.float32 and a.shape == (48, 64, 4)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("border", [[37, 21, 50, 33], [0, 0, 17, 90], [143, 77, 17, 13]])
def test_border_render_matches_the_full_frame_exactly(
    demo_renderer: Renderer, tmp_path: Path, border: list[int]
) -> None:
    m = manifest(resolution_x=160, resolution_y=90)
    full = read_image(Path(demo_renderer.render(m, tmp_path / "full.exr")["path"]))
    stats = demo_renderer.render({**m, "border": border}, tmp_path / "crop.exr")
    crop = read_image(Path(stats["path"]))
    x, y, w, h = border  # y from the top of the image
    assert crop.shape == (h, w, 4) and (stats["width"], stats["height"]) == (w, h)
    assert np.array_equal(crop, full[y : y + h, x : x + w])


def test_scene_stays_loaded_across_frames(demo_renderer: Renderer, tmp_path: Path) -> None:
    pid, starts = demo_renderer.pid, demo_renderer.starts
    s1 = demo_renderer.render(manifest(frame=1), tmp_path / "f1.exr")
    s2 = demo_renderer.render(manifest(frame=24), tmp_path / "f24.exr")
    assert s1["loads"] == s2["loads"] == 1 and s2["renders"] == s1["renders"] + 1
    assert demo_renderer.pid == pid and demo_renderer.starts == starts
    # The animation moves: different frames, different pixels.
    assert not np.array_equal(read_image(Path(s1["path"])), read_image(Path(s2["path"])))


def test_output_carries_no_host_metadata(demo_renderer: Renderer, tmp_path: Path) -> None:
    out = Path(demo_renderer.render(manifest(), tmp_path / "meta.exr")["path"])
    inp = oiio().ImageInput.open(str(out))
    names = {a.name for a in inp.spec().extra_attribs}
    inp.close()
    assert not names & {"File", "Date", "RenderTime", "Hostname", "Note"}


def test_camera_pinning(demo_renderer: Renderer, tmp_path: Path) -> None:
    assert demo_renderer.render(manifest(camera="Camera"), tmp_path / "c.exr")["camera"] == "Camera"
    with pytest.raises(BlendFileError, match="not a camera"):
        demo_renderer.render(manifest(camera="Ground"), tmp_path / "g.exr")


def test_unavailable_gpu_is_a_clear_error(demo_renderer: Renderer, tmp_path: Path) -> None:
    if any(d["type"] == "CUDA" for d in list_devices()):
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(DeviceError, match="no CUDA device available"):
        demo_renderer.render(manifest(device="CUDA"), tmp_path / "gpu.exr")
    assert demo_renderer.alive  # a bad request does not kill the server


def test_list_devices_has_the_cpu() -> None:
    devices = list_devices()
    assert devices[0]["type"] == "CPU" and set(devices[0]) == {"type", "name", "id", "use"}


def test_pinned_blender_version_is_enforced(demo_renderer: Renderer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"pins Blender 4\.2\.0"):
        demo_renderer.render(manifest(blender_version="4.2.0"), tmp_path / "v.exr")


def test_denoised_frame_comes_with_its_noisy_pass(blend_factory: BlendFactory, tmp_path: Path) -> None:
    case = blend_factory.get("denoise")
    with Renderer() as r:
        r.load(case.blend, case.bundle_root)
        stats = r.render(manifest(use_denoising=True), tmp_path / "den.exr")
        plain = r.render(manifest(use_denoising=False), tmp_path / "plain.exr")
        crop = r.render(manifest(use_denoising=False, border=[10, 5, 20, 16]), tmp_path / "crop.exr")
    assert stats["noisy_path"] == str(tmp_path / "den.noisy.exr")
    denoised, noisy = read_image(tmp_path / "den.exr"), read_image(tmp_path / "den.noisy.exr")
    nodenoise = read_image(Path(plain["path"]))
    assert noisy.shape == denoised.shape == (48, 64, 4)
    assert np.array_equal(noisy, nodenoise)  # the noisy pass is exactly the render without the denoiser
    assert not np.array_equal(denoised, noisy)
    assert np.array_equal(read_image(Path(crop["path"])), noisy[5:21, 10:30])  # what a verifier's crop checks


@pytest.mark.parametrize(
    ("kind", "raw_paths"),
    [
        ("absolute_image", {"/etc/hostname", "{private}/secret.png"}),
        ("escape_image", {"//../../secret.png"}),
        ("symlink_image", {"//textures/secret.png"}),
        ("outside_library", {"{private}/lib.blend"}),
        ("geometry_import", {"{private}/secret.txt"}),
    ],
)
def test_renderer_refuses_outside_paths(
    blend_factory: BlendFactory,
    tmp_path: Path,
    kind: str,
    raw_paths: set[str],
) -> None:
    case = blend_factory.get(kind)
    with Renderer() as r:
        with pytest.raises(RenderRefused) as err:
            r.load(case.blend, case.bundle_root)
        assert {o["raw_path"] for o in err.value.offences} == {p.format(private=case.private) for p in raw_paths}
        for p in raw_paths:
            assert p.format(private=case.private) in str(err.value)
        with pytest.raises(SandboxError, match="no scene loaded"):
            r.render(manifest(), tmp_path / "x.exr")
    assert not (tmp_path / "x.exr").exists()


def test_the_render_childs_lines_come_out_as_the_callers_under_its_lease(blend_factory: BlendFactory, json_log) -> None:
    case = blend_factory.get("escape_image")
    with logs.scope(node_id=7, lease_id=5, frame=3), Renderer() as r:  # the ids the agent binds around a render
        with pytest.raises(RenderRefused):
            r.load(case.blend, case.bundle_root)
    ids = {"node_id": 7, "lease_id": 5, "frame": 3}
    assert json_log.one("render_server_started").items() >= ids.items()
    failed = json_log.one("command_failed")  # logged by the render server, in its process
    assert failed.items() >= {**ids, "logger": "workers.blend.render_server", "level": "error", "cmd": "load"}.items()
    assert "RenderRefused" in failed["exception"]


@pytest.mark.parametrize("kind", ["autorun_text", "python_driver", "compositor_file_output", "osl_script"])
def test_scene_code_never_runs_when_rendering(blend_factory: BlendFactory, tmp_path: Path, kind: str) -> None:
    case = blend_factory.get(kind)
    with Renderer() as r:
        info = r.load(case.blend, case.bundle_root)
        r.render(manifest(frame=2), tmp_path / "a.exr")
        r.render(manifest(frame=3, file_format="PNG"), tmp_path / "b.png")
    if case.marker is not None:
        assert not case.marker.exists()
        assert list(case.marker.parent.iterdir()) == []  # nor any File Output image
    if kind == "python_driver":
        assert info["muted_python_drivers"] == ["NoiseCube.location[2]"]
    if kind == "osl_script":
        assert info["osl_disabled"] is True


def test_unsupported_scenes(blend_factory: BlendFactory, tmp_path: Path) -> None:
    with Renderer() as r:
        eevee = blend_factory.get("eevee")
        with pytest.raises(BlendFileError, match="BLENDER_EEVEE is not supported"):
            r.load(eevee.blend, eevee.bundle_root)
        no_cam = blend_factory.get("no_camera")
        r.load(no_cam.blend, no_cam.bundle_root)
        with pytest.raises(BlendFileError, match="no active camera"):
            r.render(manifest(), tmp_path / "x.exr")
        for kind, message in (("truncated", "corrupt or truncated"), ("random_bytes", "not a Blender file")):
            case = blend_factory.get(kind)
            with pytest.raises(BlendFileError, match=message):
                r.load(case.blend, case.bundle_root)


def test_render_timeout_kills_the_subprocess(blend_factory: BlendFactory, tmp_path: Path) -> None:
    case = blend_factory.get("demo")
    with Renderer() as r:
        r.load(case.blend, case.bundle_root)
        pid = r.pid
        with pytest.raises(SandboxError) as err:
            r.render(manifest(resolution_x=320, resolution_y=180, samples=64), tmp_path / "slow.exr", timeout_s=0.5)
        assert err.value.reason == "timeout"
        assert not r.alive
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        # The next load starts a fresh server.
        r.load(case.blend, case.bundle_root)
        assert r.pid != pid and r.starts == 2


def test_memory_limit_error_is_clear(blend_factory: BlendFactory) -> None:
    case = blend_factory.get("demo")
    with Renderer(memory_mb=300) as r, pytest.raises(SandboxError) as err:
        r.load(case.blend, case.bundle_root)
    assert err.value.reason == "memory"
    assert "out of memory" in str(err.value) and "300 MB" in str(err.value)


def test_positive_control_the_bad_fixtures_do_run_when_allowed(tmp_path: Path) -> None:
    """Opened the unsafe way (scripts on, compositing on), these scenes do create their markers: so the
    tests above that find no marker really prove the renderer and the inspection keep them inert."""
    cases = build_cases(tmp_path, ["autorun_text", "python_driver", "compositor_file_output"])
    for case in cases.values():
        run_bpy_module(
            "tests.fixtures._open_unsafely",
            [str(case.blend)],
            limits=Limits(timeout_s=60, filesystem_isolation=False),
        )
        assert case.marker is not None
        assert list(case.marker.parent.iterdir()), f"{case.kind}: its code did not run even when allowed"


def test_gpu_mode_limits_render_on_cpu_too(
    blend_factory: BlendFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpu=True caps RLIMIT_DATA instead of RLIMIT_AS and sets up a kernel cache; CPU renders still work."""
    monkeypatch.setenv("RENDER_GPU_KERNEL_CACHE", str(tmp_path / "kernels"))
    case = blend_factory.get("demo")
    with Renderer(gpu=True) as r:
        r.load(case.blend, case.bundle_root)
        stats = r.render(manifest(), tmp_path / "gpu_mode.exr")
    assert read_image(Path(stats["path"])).shape == (48, 64, 4)
    assert (tmp_path / "kernels").is_dir()
