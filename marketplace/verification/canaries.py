"""Canary jobs: real scenes owned by the platform, whose answers the platform rendered once.

Canary frames are leased by matching like artist frames (same lease, manifest and queue message), at a
rate set by the node's trust (`services.canary_frame_for`), and judged over the whole frame against the
answer (`services._canary_check`). They are priced 0: no escrow, no artist money, no provider pay; the
honest provider's cost is a bounded share of its work (check_rate * CANARY_SHARE: 10 % while a node is
new, 1 % at steady trust).

Canary jobs are created here rather than through the artist's job flow because there is no artist: no
quote, no escrow, and the job must be RUNNING only once its answers exist.
"""
from __future__ import annotations

import hashlib
import io
import secrets
import tempfile
from pathlib import Path
from types import SimpleNamespace

from django.db import transaction
from django.utils import timezone

from marketplace import blobs
from marketplace.accounts.models import User
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import JOB_TRANSITIONS, FrameState, JobState, transition
from marketplace.scenes.models import Scene
from marketplace.scenes.series import scene_series
from marketplace.verification import conf, platform
from marketplace.verification.models import CanaryAnswer

# The platform renders answers on its own CPU; manifest_for only reads the node's device type.
PLATFORM_RENDERER = SimpleNamespace(device_type="CPU")


def canary_owner() -> User:
    """The platform account that owns canary jobs (nobody can log in: its password is never known)."""
    from marketplace.accounts.services import user_create

    user = User.objects.filter(username=conf.CANARY_USERNAME).first()
    return user or user_create(username=conf.CANARY_USERNAME, password=secrets.token_urlsafe(32))


@transaction.atomic
def canary_job_store(*, owner: User, blend: bytes, report: dict, name: str) -> Job:
    sha = hashlib.sha256(blend).hexdigest()
    scene = Scene.objects.create(owner=owner, name=name, kind=Scene.Kind.BLEND, sha256=sha, size=len(blend),
                                 blend_path="scene.blend", status=Scene.Status.READY, report=report)
    blobs.blob_put(key=scene.storage_key, fileobj=io.BytesIO(blend))
    job = Job.objects.create(owner=owner, scene=scene, name=name, state=JobState.QUOTED, is_canary=True,
                             frame_start=report["frame_start"], frame_end=report["frame_end"],
                             resolution_x=report["effective_width"], resolution_y=report["effective_height"],
                             samples=report["samples"], seed=secrets.randbelow(2**31), price_per_frame=0,
                             blender_series=scene_series(report))
    Frame.objects.bulk_create(Frame(job=job, number=n, price=0, state=FrameState.QUEUED) for n in job.frame_numbers)
    return job


def canary_answers_render(*, job_id: int) -> int:
    """Render every frame of a canary job on the platform with the manifest a node would get; store them."""
    from marketplace.dispatch.services import manifest_for

    job = Job.objects.select_related("scene").get(pk=job_id, is_canary=True)
    scene = job.scene
    stored = 0
    for frame in job.frames.filter(canary_answer__isnull=True).order_by("number"):
        manifest = manifest_for(frame, node=PLATFORM_RENDERER)
        data = platform.render(scene={"sha256": scene.sha256, "kind": scene.kind, "storage_key": scene.storage_key,
                                      "blend_path": scene.blend_path}, manifest=manifest)
        ext = "exr" if manifest["file_format"] == "OPEN_EXR" else "png"
        key = blobs.blob_put(key=f"canaries/job{job.pk}/frame{frame.pk}.{ext}", fileobj=io.BytesIO(data))
        CanaryAnswer.objects.create(frame=frame, answer_key=key)
        stored += 1
    return stored


def canary_job_open(*, job_id: int) -> bool:
    """Let matching lease the canary's frames (call once its answers are stored)."""
    return transition(Job, pk=job_id, current=JobState.QUOTED, target=JobState.QUEUED, table=JOB_TRANSITIONS,
                      accepted_at=timezone.now())


def canary_jobs_create(*, count: int, frames: int, resolution: tuple[int, int], samples: int) -> list[Job]:
    """`count` canary jobs, each a freshly generated variant of the demo scene (its own SHA-256)."""
    from workers.blend import inspect_scene, make_demo_scene

    owner = canary_owner()
    jobs = []
    for _ in range(count):
        with tempfile.TemporaryDirectory(prefix="canary-") as tmp:
            blend = make_demo_scene(Path(tmp) / "scene.blend", frames=frames, resolution=resolution, samples=samples,
                                    seed=secrets.randbelow(2**31))
            report = inspect_scene(blend, bundle_root=blend.parent)
            job = canary_job_store(owner=owner, blend=blend.read_bytes(), report=report,
                                    name=f"scene {secrets.token_hex(4)}")
        canary_answers_render(job_id=job.pk)
        canary_job_open(job_id=job.pk)
        job.refresh_from_db()
        jobs.append(job)
    return jobs
