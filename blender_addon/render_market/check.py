"""Check: the server's inspection run on the open file, in the artist's Blender, judged by the server's policy.

`shared/` is copied from the marketplace at build time (`make addon`): the same report code
(workers/blend/inspect_scene.py, _bpy_scene.py, paths.py) and the same judge (marketplace/scenes/policy.py,
with the server's default limits), so Check and the server say the same thing in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

OUTSIDE_REFUSAL = "the scene reads files outside its upload"


class CheckError(Exception):
    pass


@dataclass
class CheckResult:
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Refusals that packing resolves (BAT brings outside files into the bundle): the rest would be refused.
    fixed_by_packing: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)

    @property
    def blocking(self) -> list[str]:
        return [r for r in self.refusals if r not in self.fixed_by_packing]

    def as_dict(self) -> dict:
        return {
            "refusals": self.refusals,
            "warnings": self.warnings,
            "fixed_by_packing": self.fixed_by_packing,
            "blocking": self.blocking,
        }


def check_open_file() -> CheckResult:
    """Inspect the open, saved .blend as the server would if it were uploaded from its own folder (main thread)."""
    import bpy

    from .shared import inspect_scene, policy

    if not bpy.data.filepath:
        raise CheckError("save the .blend first: the check judges paths relative to the saved file")
    folder = Path(bpy.data.filepath).parent
    report = inspect_scene.finish_report(inspect_scene.loaded_report(), bundle_root=folder, blend_dir=folder)
    report.pop("warnings", None)  # the worker's advisory list; the policy decides, as on the server
    verdict = policy.judge(report)
    fixed = [r for r in verdict.refusals if r.startswith(OUTSIDE_REFUSAL) and _all_packable(report)]
    return CheckResult(
        refusals=list(verdict.refusals), warnings=list(verdict.warnings), fixed_by_packing=fixed, report=report
    )


def _all_packable(report: dict) -> bool:
    """Outside files that packing copies into the bundle (dynamic paths computed at render time are not)."""
    return all(
        row.get("kind") not in ("geometry_import", "osl_script") and row.get("raw_path")
        for row in report["outside_paths"]
    )
