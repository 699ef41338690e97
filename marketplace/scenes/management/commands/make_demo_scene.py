"""`manage.py make_demo_scene [--out PATH] [--owner USERNAME]`: the generated animated Cycles demo scene.

With --owner the scene is uploaded as that user's Scene and inspected right away (no Celery worker needed).
"""

import tempfile
from pathlib import Path

from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from marketplace.accounts.models import User
from marketplace.scenes import services
from marketplace.scenes.validation import SceneRejected
from workers.blend import make_demo_scene


class Command(BaseCommand):
    help = "Build the demo scene with bpy (no downloaded assets); --owner stores and inspects it for that user"

    def add_arguments(self, parser) -> None:
        parser.add_argument("--out", type=Path, help="where to write the .blend (default: a temporary file)")
        parser.add_argument("--owner", help="username to upload the scene for")
        parser.add_argument("--name", default="Demo scene")
        parser.add_argument("--frames", type=int, default=24)
        parser.add_argument("--width", type=int, default=320)
        parser.add_argument("--height", type=int, default=180)
        parser.add_argument("--samples", type=int, default=32)

    def handle(
        self,
        *args,
        out: Path | None,
        owner: str | None,
        name: str,
        frames: int,
        width: int,
        height: int,
        samples: int,
        **options,
    ) -> None:
        user = None
        if owner is not None:
            user = User.objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"no user {owner!r}")
        with tempfile.TemporaryDirectory(prefix="demo-scene-") as tmp:
            path = out or Path(tmp) / "demo.blend"
            make_demo_scene(path, frames=frames, resolution=(width, height), samples=samples)
            self.stdout.write(f"demo scene: {path if out else 'built'} ({path.stat().st_size} bytes)")
            if user is None:
                if out is None:
                    self.stdout.write("nothing kept: give --out PATH or --owner USERNAME")
                return
            with open(path, "rb") as f:
                try:
                    scene = services.scene_upload(
                        owner=user, uploaded_file=File(f, name="demo.blend"), name=name, enqueue=False
                    )
                except SceneRejected as exc:
                    raise CommandError(f"demo scene refused: {exc.reason}") from exc
                except PermissionDenied as exc:
                    raise CommandError(f"{owner} cannot upload scenes: {exc}") from exc
        scene = services.scene_inspect(scene_id=scene.pk)
        if scene.status != scene.Status.READY:
            raise CommandError(f"demo scene {scene.pk} was refused: {scene.refusal}")
        self.stdout.write(
            self.style.SUCCESS(
                f"scene {scene.pk} {scene.name!r} for {owner} is {scene.status} "
                f"({reverse('scenes:detail', args=[scene.pk])})"
            )
        )
