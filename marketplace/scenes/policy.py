"""What the marketplace accepts: an inspection report (workers.blend.inspect_scene) in, refusals + warnings out.

The one place that decides. Refusals are things a render must never do or cannot do (another engine, no
camera, sizes over the limits, reading files outside the upload, code in the scene); warnings are
things the artist should know (what is ignored, switched off or missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marketplace.scenes import conf

SUPPORTED_ENGINE = "CYCLES"
OUTPUT_FORMATS = ("PNG", "OPEN_EXR")


@dataclass(frozen=True)
class Verdict:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.refusals

    @property
    def refusal(self) -> str:
        """One reason per line."""
        return "\n".join(self.refusals)


def _outside(row: Mapping[str, Any]) -> str:
    return f"{row['kind']} {row['datablock']!r}: {row['raw_path']} ({row['reason']})"


def _driver(row: Mapping[str, Any]) -> str:
    return f"{row['datablock']}.{row['data_path']}[{row['index']}] = {row['expression']!r}"


def judge(report: Mapping[str, Any]) -> Verdict:
    refusals: list[str] = []
    engine = report["engine"]
    if engine != SUPPORTED_ENGINE:
        refusals.append(f"unsupported engine {engine}: switch the render engine to Cycles")
    if not report["cameras"]:
        refusals.append("the scene has no camera: add one and make it the active camera")
    elif report["active_camera"] is None:
        refusals.append("the scene has no active camera: set one in the scene properties")
    width, height = report["effective_width"], report["effective_height"]
    if max(width, height) > conf.MAX_SIDE:
        refusals.append(
            f"effective resolution {width}x{height} (resolution x {report['resolution_percentage']} %) "
            f"is over the limit of {conf.MAX_SIDE} px per side"
        )
    if min(width, height) < conf.MIN_SIDE:
        refusals.append(f"effective resolution {width}x{height} is too small to render")
    frames = report["frame_count"]
    if frames > conf.MAX_FRAMES:
        refusals.append(
            f"{frames} frames ({report['frame_start']}-{report['frame_end']} step {report['frame_step']}) "
            f"is over the limit of {conf.MAX_FRAMES} frames per scene"
        )
    elif frames == 0:
        refusals.append(f"the frame range {report['frame_start']}-{report['frame_end']} is empty")
    if report["outside_paths"]:
        refusals.append(
            "the scene reads files outside its upload (pack them into the .blend or put them in the zip "
            "with // relative paths): " + "; ".join(_outside(r) for r in report["outside_paths"])
        )
    if report["osl_script_nodes"]:
        refusals.append(
            "OSL script nodes are not allowed (they can read any file on the render machine): "
            + "; ".join(n["where"] for n in report["osl_script_nodes"])
        )
    if report["python_drivers"]:
        refusals.append(
            "Python driver expressions are not allowed (use simple expressions or keyframes): "
            + "; ".join(_driver(d) for d in report["python_drivers"])
        )
    return Verdict(refusals=refusals, warnings=warnings_for(report))


def warnings_for(report: Mapping[str, Any]) -> list[str]:
    warnings: list[str] = []
    for row in report["missing_files"]:
        warnings.append(f"missing from the upload: {row['kind']} {row['datablock']!r} ({row['raw_path']})")
    for text in report["text_blocks"]:
        if text["use_module"]:
            warnings.append(
                f"text block {text['name']!r} is registered to run on load: it was not run and never will be"
            )
    plain_texts = [t["name"] for t in report["text_blocks"] if not t["use_module"]]
    if plain_texts:
        warnings.append(f"text blocks are ignored: {', '.join(plain_texts)}")
    if report["use_denoising"]:
        warnings.append("denoising is on: frames are denoised, and verified against their noisy pass")
    if report["use_adaptive_sampling"]:
        warnings.append("adaptive sampling is switched off for rendering (results must be reproducible)")
    if report["uses_osl"]:
        warnings.append("Open Shading Language is switched off for rendering")
    if report["uses_compositing"] or report["file_output_nodes"]:
        warnings.append("compositing is ignored: frames are the raw render")
    if report["uses_sequencer"]:
        warnings.append("the video sequencer is ignored")
    if len(report["view_layers"]) > 1:
        warnings.append(f"only the active view layer is rendered ({len(report['view_layers'])} are enabled)")
    if report["marker_cameras"]:
        warnings.append("camera switching by timeline markers is ignored: the active camera renders every frame")
    if report["has_linked_libraries"]:
        warnings.append(f"the scene links {len(report['libraries'])} library file(s) from the upload")
    if report.get("series_warning"):
        warnings.append(report["series_warning"])
    elif report.get("saved_with_newer_blender"):
        warnings.append(
            f"saved with Blender {report['blender_version_saved']}, newer than the render farm's "
            f"{report['blender_version']}: some features may be lost"
        )
    file_format = report["output_format"]["file_format"]
    if file_format not in OUTPUT_FORMATS:
        warnings.append(f"output format {file_format} is replaced by the job's PNG or EXR")
    if report["scripted_drivers_simple"]:
        warnings.append(f"{report['scripted_drivers_simple']} simple driver expression(s) are evaluated without Python")
    return warnings
