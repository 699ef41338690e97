"""Canary jobs: real scenes owned by the platform, whose answers the platform rendered once.

Canary frames are leased by matching like artist frames (same lease, manifest and queue message), at a
rate set by the node's trust (`services.canary_frame_for`; each node's canary is chosen ahead of its draw,
`services.canary_offers_renew`), and judged over the whole frame against the answer (`services._canary_check`).
They are priced 0: no escrow, no artist money, no provider pay; the honest provider's cost is a bounded share
of its work (check_rate * CANARY_SHARE: 10 % while a node is new, 1 % at steady trust).

Canary jobs are created here rather than through the artist's job flow because there is no artist: no
quote, no escrow, and the job must be RUNNING only once its answers exist.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.db import IntegrityError, transaction
from django.db.models import F

from marketplace import blobs
from marketplace.accounts.models import User
from marketplace.dispatch.services import manifest_for
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import JobState
from marketplace.nodes.models import WorkerNode
from marketplace.scenes.models import Scene
from marketplace.scenes.series import scene_series
from marketplace.verification import conf, platform, policy, services
from marketplace.verification.models import CanaryAnswer


def canary_owner() -> User:
    """The platform's reserved account that owns canary jobs, found by its flag, never by its name (anyone may
    sign up under any free name). It has no usable password and no token: nobody can log in as it."""
    owner = User.objects.filter(is_platform=True).first()
    if owner is not None:
        return owner
    owner = User(username=f"{conf.CANARY_USERNAME}-{secrets.token_hex(4)}", is_platform=True)
    owner.set_unusable_password()
    try:
        with transaction.atomic():
            owner.save()
    except IntegrityError:  # another process created it first: there is one platform account (a constraint)
        return User.objects.get(is_platform=True)
    return owner


@dataclass(frozen=True)
class CanaryShape:
    """Everything of a canary job that reaches a node in its manifest, besides the scene itself."""

    width: int
    height: int
    samples: int
    seed: int
    frame_start: int
    frame_step: int
    frames: int
    output_format: str
    blend_name: str


def canary_shape(*, frames: int, resolution: tuple[int, int], samples: int) -> CanaryShape:
    """The shape of the next canary job, copied from an artist job drawn at random among the recent ones (so a
    canary's seed, file name, size, samples, frame numbers and format follow the artists' distribution), among
    those whose frames the platform can afford to answer (policy.CANARY_MAX_MEGASAMPLES). `frames` caps the
    frame count; `resolution` and `samples` are used only while the market has no such artist job."""
    cap = policy.canary_max_megasamples() * 1_000_000
    recent = list(
        Job.objects.filter(is_canary=False, tile_side=1, use_denoising=False, scene__kind=Scene.Kind.BLEND)
        .exclude(state=JobState.QUOTED)
        .alias(cost=F("resolution_x") * F("resolution_y") * F("samples"))
        .filter(cost__lte=cap)
        .select_related("scene")
        .order_by("-pk")[: policy.CANARY_TEMPLATE_JOBS]
    )
    if not recent:
        return CanaryShape(
            width=resolution[0],
            height=resolution[1],
            samples=samples,
            seed=0,
            frame_start=1,
            frame_step=1,
            frames=frames,
            output_format=Job.Output.PNG,
            blend_name="scene.blend",
        )
    job = secrets.choice(recent)
    return CanaryShape(
        width=job.resolution_x,
        height=job.resolution_y,
        samples=job.samples,
        seed=job.seed,
        frame_start=job.frame_start,
        frame_step=job.frame_step,
        output_format=job.output_format,
        frames=min(frames, (job.frame_end - job.frame_start) // job.frame_step + 1),
        blend_name=_blend_name(job.scene.blend_path),
    )


def _blend_name(path: str) -> str:
    # Only a plain file name: it becomes a path in the platform's temp dir.
    name = PurePosixPath(path).name
    return name if name.endswith(".blend") and not name.startswith(".") and "\\" not in name else "scene.blend"


@transaction.atomic
def canary_job_store(*, owner: User, blend: bytes, report: dict, name: str, shape: CanaryShape | None = None) -> Job:
    sha = hashlib.sha256(blend).hexdigest()
    scene = Scene.objects.create(
        owner=owner,
        name=name,
        kind=Scene.Kind.BLEND,
        sha256=sha,
        size=len(blend),
        blend_path=shape.blend_name if shape else "scene.blend",
        status=Scene.Status.READY,
        report=report,
    )
    blobs.blob_put(key=scene.storage_key, fileobj=io.BytesIO(blend))
    job = Job.objects.create(
        owner=owner,
        scene=scene,
        name=name,
        is_canary=True,
        frame_start=report["frame_start"],
        frame_end=report["frame_end"],
        frame_step=shape.frame_step if shape else 1,
        resolution_x=report["effective_width"],
        resolution_y=report["effective_height"],
        samples=report["samples"],
        seed=shape.seed if shape else 0,
        output_format=shape.output_format if shape else Job.Output.PNG,
        price_per_frame=0,
        blender_series=scene_series(report),
    )
    # Born QUOTED with QUEUED frames (the models' defaults); canary_job_open moves the job on once answers exist.
    Frame.objects.bulk_create(Frame(job=job, number=n, price=0) for n in job.frame_numbers)
    return job


def canary_answers_render(*, job_id: int) -> int:
    """Render every frame of a canary job on the platform with the manifest a node would get; store them."""
    job = Job.objects.select_related("scene").get(pk=job_id, is_canary=True)
    scene = job.scene
    # The platform renders answers on its own CPU: a node that is no row, with no benchmark (manifest_for reads
    # only its device type and bench score).
    platform_renderer = WorkerNode(device_type=WorkerNode.Device.CPU)
    stored = 0
    for frame in job.frames.filter(canary_answer__isnull=True).order_by("number"):
        manifest = manifest_for(frame, node=platform_renderer)
        data = platform.render(
            scene=platform.stored_scene(scene),
            manifest=manifest,
        )
        ext = "exr" if manifest["file_format"] == "OPEN_EXR" else "png"
        key = blobs.blob_put(key=f"canaries/job{job.pk}/frame{frame.pk}.{ext}", fileobj=io.BytesIO(data))
        CanaryAnswer.objects.create(frame=frame, answer_key=key)
        stored += 1
    return stored


def canary_job_open(*, job_id: int) -> bool:
    """Let matching lease the canary's frames (call once its answers are stored): they are offered to the nodes
    that have no canary yet (`services.canary_offers_renew`). RUNNING at once: a job's first lease starts it, a
    statement more in that agent's call, which for a canary job would make its first lease stand out."""
    opened = lifecycle.job_open(job_id=job_id)
    if opened:
        lifecycle.jobs_mark_running(job_ids=[job_id])
    services.canary_offers_renew_soon()
    return opened


def canary_jobs_create(*, count: int, frames: int, resolution: tuple[int, int], samples: int) -> list[Job]:
    """`count` canary jobs, each shaped like a random recent artist job (`canary_shape`) and each a freshly
    generated variant of the demo scene (its own SHA-256: the scene's stored Cycles seed is random, while the
    manifest's seed is the artist job's)."""
    from workers.blend.demo_scene import make_demo_scene
    from workers.blend.inspect_scene import inspect_scene

    owner = canary_owner()
    jobs = []
    for _ in range(count):
        shape = canary_shape(frames=frames, resolution=resolution, samples=samples)
        with tempfile.TemporaryDirectory(prefix="canary-") as tmp:
            blend = make_demo_scene(
                Path(tmp) / shape.blend_name,
                frames=shape.frames,
                resolution=(shape.width, shape.height),
                samples=shape.samples,
                frame_start=shape.frame_start,
                frame_end=shape.frame_start + (shape.frames - 1) * shape.frame_step,
                seed=secrets.randbelow(2**31),
            )
            report = inspect_scene(blend, bundle_root=blend.parent)
            job = canary_job_store(
                owner=owner, blend=blend.read_bytes(), report=report, name=f"scene {secrets.token_hex(4)}", shape=shape
            )
        canary_answers_render(job_id=job.pk)
        canary_job_open(job_id=job.pk)
        job.refresh_from_db()
        jobs.append(job)
    return jobs
