"""Create canary jobs (demo-scene variants with answers rendered by the platform) for matching to mix in."""

from django.core.management.base import BaseCommand

from marketplace.verification.canaries import canary_jobs_create


class Command(BaseCommand):
    help = "Create canary jobs: platform-owned scenes with known answers, mixed into nodes' work"

    def add_arguments(self, parser) -> None:
        parser.add_argument("--jobs", type=int, default=4, help="canary scenes to create")
        parser.add_argument("--frames", type=int, default=6)
        parser.add_argument("--width", type=int, default=320)
        parser.add_argument("--height", type=int, default=180)
        parser.add_argument("--samples", type=int, default=32)

    def handle(self, *args, jobs: int, frames: int, width: int, height: int, samples: int, **options) -> None:
        created = canary_jobs_create(count=jobs, frames=frames, resolution=(width, height), samples=samples)
        for job in created:
            self.stdout.write(f"canary job {job.pk}: {job.frames.count()} frames with answers")
