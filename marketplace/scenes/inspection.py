"""Inspect a checked upload: unpack it into a private temp dir, read it with bpy (sandboxed), judge it, calibrate.

Shared by the Celery task (a stored blob) and the `inspect_scene` command (a local file). No database here.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from marketplace.scenes import conf, policy, series
from marketplace.scenes.calibration import calibration_measure
from workers.blend import BlendError, inspect_scene
from workers.blend.renderer import Renderer
from workers.bundle import BundleError, safe_extract


@dataclass(frozen=True)
class Inspection:
    report: dict[str, Any]
    refusal: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.refusal


def inspect_upload(*, fileobj: IO[bytes], kind: str, blend_path: str) -> Inspection:
    """Report, refusal and warnings of one upload (`kind` "blend" or "zip", as `validation` found it).

    A scene that Blender cannot open, or that hits the sandbox's limits, is refused with the reason.
    """
    work = Path(tempfile.mkdtemp(prefix="scene-inspect-"))  # mode 0700: private to this process
    try:
        root = work / "bundle"
        root.mkdir()
        blend = _unpack(fileobj, kind=kind, blend_path=blend_path, work=work, root=root)
        runtime, series_warning = series.choose(blend)
        python = runtime.interpreter
        report = inspect_scene(
            blend, bundle_root=root, timeout_s=conf.INSPECT_TIMEOUT_S, memory_mb=conf.INSPECT_MEMORY_MB, python=python
        )
        report.pop("warnings", None)  # the worker's advisory list; policy.py decides what to tell the artist
        report["blender_series"] = runtime.series.name
        report["series_warning"] = series_warning
        verdict = policy.judge(report)
        if verdict.accepted:
            report["calibration"] = calibrate(blend, root=root, report=report, work=work, python=python)
        return Inspection(report=report, refusal=verdict.refusal, warnings=verdict.warnings)
    except (BlendError, BundleError, series.SeriesUnavailable) as exc:
        return Inspection(report={}, refusal=str(exc))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _unpack(fileobj: IO[bytes], *, kind: str, blend_path: str, work: Path, root: Path) -> Path:
    if kind == "zip":
        archive = work / "upload.zip"
        with open(archive, "wb") as out:
            shutil.copyfileobj(fileobj, out, 1 << 20)
        try:
            safe_extract(archive, root, max_bytes=conf.ZIP_MAX_UNCOMPRESSED_BYTES, max_files=conf.ZIP_MAX_FILES)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            # Validation reads the central directory only; a member's damaged data (bad CRC, broken deflate,
            # an unsupported method) shows up here, and must refuse the scene rather than crash the task.
            raise BundleError(f"corrupt .zip: {exc}") from exc
        archive.unlink()
        return root / PurePosixPath(blend_path)
    blend = root / PurePosixPath(blend_path).name
    with open(blend, "wb") as out:
        shutil.copyfileobj(fileobj, out, 1 << 20)
    return blend


def calibration_size(width: int, height: int) -> tuple[int, int]:
    """CALIBRATION_SCALE_PERCENT of the effective size, at least CALIBRATION_MIN_SIDE (never above the full size)."""

    def side(n: int) -> int:
        return min(n, max(conf.CALIBRATION_MIN_SIDE, n * conf.CALIBRATION_SCALE_PERCENT // 100))

    return side(width), side(height)


def calibrate(
    blend: Path, *, root: Path, report: dict[str, Any], work: Path, python: Path | None = None
) -> dict[str, Any]:
    """The quote's time measure: `scenes.calibration`'s timed renders at reduced size, on CPU, in a sandbox, with
    the scene's series (`python`: its runtime's interpreter; None: the market's own bpy)."""
    size = calibration_size(report["effective_width"], report["effective_height"])
    with Renderer(
        memory_mb=conf.CALIBRATION_MEMORY_MB, timeout_s=conf.CALIBRATION_TIMEOUT_S, python=python
    ) as renderer:
        return calibration_measure(renderer, blend=blend, root=root, report=report, size=size, out_dir=work)
