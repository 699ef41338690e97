"""`manage.py inspect_scene FILE [--json]`: the upload checks and the bpy inspection, without a database row.

Prints the report (or the refusal) and exits 1 when the scene would be refused.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from marketplace.scenes.inspection import Inspection, inspect_upload
from marketplace.scenes.validation import SceneRejected, check_upload


class Command(BaseCommand):
    help = "Inspect a .blend or .zip the way uploads are inspected; exit status 1 when it would be refused"

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the whole outcome as JSON")

    def handle(self, *args, file: Path, as_json: bool, **options) -> None:
        if not file.is_file():
            raise CommandError(f"{file} is not a file")
        try:
            checked = check_upload(file, filename=file.name)
        except SceneRejected as exc:
            outcome = Inspection(report={}, refusal=exc.reason)
        else:
            with open(file, "rb") as f:
                outcome = inspect_upload(fileobj=f, kind=checked.kind, blend_path=checked.blend_path)
        if as_json:
            self._print_json(outcome)
        else:
            self._print_text(outcome)
        if not outcome.accepted:
            raise CommandError(f"refused: {outcome.refusal}", returncode=1)

    def _print_json(self, outcome: Inspection) -> None:
        self.stdout.write(
            json.dumps(
                {
                    "accepted": outcome.accepted,
                    "refusal": outcome.refusal,
                    "warnings": outcome.warnings,
                    "report": outcome.report,
                },
                indent=2,
            )
        )

    def _print_text(self, outcome: Inspection) -> None:
        report = outcome.report
        if report:
            self.stdout.write(
                f"Frames: {report['frame_start']}-{report['frame_end']} step {report['frame_step']}"
                f" ({report['frame_count']} frames)"
            )
            self.stdout.write(
                f"Resolution: {report['resolution_x']}x{report['resolution_y']} at "
                f"{report['resolution_percentage']} % = "
                f"{report['effective_width']}x{report['effective_height']}"
            )
            for label, key in (
                ("Blender version saved with", "blender_version_saved"),
                ("Render engine", "engine"),
                ("Samples", "samples"),
                ("Denoising", "use_denoising"),
                ("Adaptive sampling", "use_adaptive_sampling"),
            ):
                self.stdout.write(f"{label}: {report[key]}")
            self.stdout.write(
                f"Cameras: {', '.join(report['cameras']) or 'none'} (active: {report['active_camera'] or 'none'})"
            )
            self.stdout.write(f"Output format: {report['output_format']['file_format']}")
            self.stdout.write(f"Missing files: {len(report['missing_files'])}")
            if "calibration" in report:
                cal = report["calibration"]
                self.stdout.write(
                    f"Calibration: frame {cal['frame']} at {cal['width']}x{cal['height']}, "
                    f"{cal['samples']} samples on {cal['device']}: {cal['seconds']} s"
                )
        for warning in outcome.warnings:
            self.stdout.write(f"warning: {warning}")
        if outcome.accepted:
            self.stdout.write(self.style.SUCCESS("accepted"))
