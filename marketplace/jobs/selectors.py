"""Reads about jobs shared by the job pages and the API. Only the owner sees a job: others get JobNotFound."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from marketplace.disputes.services import dispute_deadline
from marketplace.jobs.errors import JobNotFound
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FRAME_CANCELLABLE, FRAME_OPEN, FrameState, JobState
from marketplace.ledger.models import Account
from marketplace.ledger.selectors import account_balance, user_balances
from marketplace.ledger.services import escrow_account
from marketplace.scenes.models import Scene

FINISHED_FRAME_STATES = (FrameState.RENDERED, FrameState.VERIFYING, FrameState.SETTLED)


def jobs_of(*, owner) -> QuerySet[Job]:
    return (Job.objects.filter(owner=owner).select_related("scene").order_by("-created_at", "-pk")
            .annotate(frames_total=Count("frames"),
                      frames_settled=Count("frames", filter=Q(frames__state=FrameState.SETTLED))))


def job_of(*, owner, job_id: int) -> Job:
    job = Job.objects.select_related("scene").filter(pk=job_id, owner=owner).first()
    if job is None:
        raise JobNotFound("no such job")
    return job


def frame_of(*, owner, job_id: int, frame_id: int) -> Frame:
    frame = Frame.objects.select_related("job").filter(pk=frame_id, job_id=job_id, job__owner=owner).first()
    if frame is None:
        raise JobNotFound("no such frame")
    return frame


def scene_of(*, owner, scene_id: object) -> Scene:
    """The owner's scene to quote; JobNotFound for anyone else's or a malformed id."""
    scene = Scene.objects.filter(pk=int(scene_id), owner=owner).first() if str(scene_id).isdigit() else None
    if scene is None:
        raise JobNotFound("no such scene")
    return scene


def job_is_live(*, job: Job) -> bool:
    """Whether the job page should keep refreshing: frames may still change."""
    return job.state in (JobState.QUEUED, JobState.RUNNING) or job.frames.filter(state__in=FRAME_OPEN).exists()


def frame_counts(*, job: Job) -> dict[str, int]:
    """Frames per state, every state present (0 when none)."""
    counts = dict(job.frames.values_list("state").annotate(n=Count("pk")))
    return {state: counts.get(state, 0) for state in FrameState.values}


@dataclass(frozen=True)
class JobMoney:
    cost_so_far: int  # micro-tokens paid for settled frames
    escrow_left: int  # micro-tokens still held for this job


def job_money(*, job: Job) -> JobMoney:
    cost = job.frames.filter(state=FrameState.SETTLED).aggregate(s=Coalesce(Sum("price"), 0))["s"]
    held = 0 if job.state == JobState.QUOTED else account_balance(
        account=escrow_account(artist=job.owner, job_ref=job.escrow_ref))
    return JobMoney(cost_so_far=cost, escrow_left=held)


def wallet_balance(*, user) -> int:
    """Micro-tokens the artist can spend now (0 before the wallet's first posting)."""
    return user_balances(user=user).get(Account.Kind.ARTIST_WALLET, 0)


@dataclass(frozen=True)
class CancelPreview:
    frames: int  # frames that cancelling now would stop
    refund: int  # micro-tokens that cancelling now would return


def cancel_preview(*, job: Job) -> CancelPreview:
    """What `services.job_cancel` would do now: queued and rendering frames stop and are refunded."""
    stoppable = job.frames.filter(state__in=FRAME_CANCELLABLE)
    agg = stoppable.aggregate(n=Count("pk"), s=Coalesce(Sum("price"), 0))
    return CancelPreview(frames=agg["n"], refund=agg["s"])


def last_finished_frame(*, job: Job) -> Frame | None:
    """The most recently rendered frame with a thumbnail: the job page's live preview."""
    return (job.frames.filter(state__in=FINISHED_FRAME_STATES).exclude(thumbnail_key="")
            .order_by("-rendered_at", "-pk").first())


def frame_disputable(*, frame: Frame) -> bool:
    """A settled frame can be disputed until its dispute window closes."""
    deadline = dispute_deadline(frame=frame)
    return frame.state == FrameState.SETTLED and deadline is not None and deadline > timezone.now()


@dataclass(frozen=True)
class FrameRow:
    frame: Frame
    disputable: bool


def frames_of(*, job: Job) -> QuerySet[Frame]:
    return job.frames.select_related("node").order_by("number", "tile_y", "tile_x")


def frame_rows(*, job: Job) -> list[FrameRow]:
    return [FrameRow(frame, frame_disputable(frame=frame)) for frame in frames_of(job=job)]


def settled_results(*, job: Job) -> QuerySet[Frame]:
    return (job.frames.filter(state=FrameState.SETTLED).exclude(result_key="")
            .order_by("number", "tile_y", "tile_x"))
