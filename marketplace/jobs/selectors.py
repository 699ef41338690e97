"""Reads about jobs shared by the job pages and the API. Only the owner sees a job: others get JobNotFound."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from marketplace import blobs
from marketplace.jobs import conf
from marketplace.jobs.errors import JobNotFound
from marketplace.jobs.models import AssembledFrame, Frame, Job, LeasedCount
from marketplace.jobs.states import FRAME_CANCELLABLE, FRAME_OPEN, JOB_LIVE, FrameState, JobState
from marketplace.ledger.models import Account
from marketplace.ledger.selectors import account_balance, transaction_exists, user_balances
from marketplace.ledger.services import escrow_account
from marketplace.scenes.models import Scene
from render_kernels import image_from_bytes, thumbnail_png

FINISHED_FRAME_STATES = (FrameState.RENDERED, FrameState.VERIFYING, FrameState.SETTLED)


def jobs_of(*, owner) -> QuerySet[Job]:
    return (
        Job.objects.filter(owner=owner)
        .select_related("scene")
        .order_by("-created_at", "-pk")
        .annotate(
            frames_total=Count("frames"), frames_settled=Count("frames", filter=Q(frames__state=FrameState.SETTLED))
        )
    )


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


VIEWER_MAX_SIDE = 2048  # the viewer's "full size": larger frames are scaled down (the zip has the originals)


def frame_viewer_png(*, frame: Frame) -> bytes:
    """A finished frame as an 8-bit PNG for the page's viewer (EXR tone-mapped as its thumbnail is); read checked
    against the digest frozen at its report, so the viewer shows exactly what was verified (JobNotFound if not)."""
    if frame.state not in FINISHED_FRAME_STATES or not frame.result_key:
        raise JobNotFound("this frame has no image yet")
    try:
        data = blobs.blob_read_checked(frame.result_key, sha256=frame.result_sha256, max_bytes=conf.RESULT_MAX_BYTES)
    except blobs.DigestMismatch as exc:
        raise JobNotFound("this frame's stored image failed its integrity check") from exc
    image = image_from_bytes(data)
    return thumbnail_png(image, max_side=min(VIEWER_MAX_SIDE, max(image.shape[:2])))


def scene_of(*, owner, scene_id: object) -> Scene:
    """The owner's scene to quote; JobNotFound for anyone else's or a malformed id."""
    scene = Scene.objects.filter(pk=int(str(scene_id)), owner=owner).first() if str(scene_id).isdigit() else None
    if scene is None:
        raise JobNotFound("no such scene")
    return scene


def job_is_live(*, job: Job) -> bool:
    """Whether the job page should keep refreshing: frames may still change, or a still is being assembled."""
    return (
        job.state in JOB_LIVE
        or job.frames.filter(state__in=FRAME_OPEN).exists()
        or any(still.assembling for still in stills_of(job=job))
    )


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
    held = (
        0
        if job.state == JobState.QUOTED
        else account_balance(account=escrow_account(artist=job.owner, job_ref=job.escrow_ref))
    )
    return JobMoney(cost_so_far=cost, escrow_left=held)


def pay_maturation_key(frame_id: int) -> str:
    """Ledger key of the frame's pay leaving the dispute window (provider pending -> available), once per frame:
    written by `payments.earnings`, read by `disputes` (a dispute comes too late once it exists)."""
    return f"mature:frame:{frame_id}"


def frame_pay_matured(*, frame_id: int) -> bool:
    return transaction_exists(key=pay_maturation_key(frame_id))


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
    return (
        job.frames.filter(state__in=FINISHED_FRAME_STATES)
        .exclude(thumbnail_key="")
        .order_by("-rendered_at", "-pk")
        .first()
    )


def frames_of(*, job: Job) -> QuerySet[Frame]:
    return job.frames.select_related("node").order_by("number", "tile_y", "tile_x")


# The job page shows one page of frames (grid and table): a 10,000-frame job's page stays small, and a poll
# only re-renders the rows of that page.
FRAMES_PER_PAGE = 48


@dataclass(frozen=True)
class FramePage:
    number: int  # 1-based, clamped to the pages there are
    pages: int
    frame_ids: list[int]

    @property
    def previous(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.pages else None


def frame_page(*, job: Job, page: str | int = 1) -> FramePage:
    """The frames of page `page` ("3", 3, junk: page 1) in the job's order."""
    total = job.frames.count()
    pages = max((total + FRAMES_PER_PAGE - 1) // FRAMES_PER_PAGE, 1)
    try:
        number = min(max(int(page), 1), pages)
    except (TypeError, ValueError):
        number = 1
    first = (number - 1) * FRAMES_PER_PAGE
    ids = list(frames_of(job=job).values_list("pk", flat=True)[first : first + FRAMES_PER_PAGE])
    return FramePage(number=number, pages=pages, frame_ids=ids)


def page_frames(*, job: Job, page: FramePage, changed_since: datetime | None = None) -> list[Frame]:
    """The frames of one page of the job page (a table row and a grid card each); `changed_since`: only those
    that changed since then. Which frames can be disputed is the disputes app's page part (jobs.extensions)."""
    frames = frames_of(job=job).filter(pk__in=page.frame_ids)
    if changed_since is not None:
        frames = frames.filter(updated_at__gte=changed_since)
    return list(frames)


STATE_CODES = {
    FrameState.QUEUED: "q",
    FrameState.LEASED: "l",
    FrameState.RENDERED: "r",
    FrameState.VERIFYING: "v",
    FrameState.SETTLED: "s",
    FrameState.FAILED: "f",
    FrameState.CANCELLED: "c",
}


def frame_state_runs(*, job: Job) -> str:
    """Every frame's state in the job's order, run-length encoded ("s120 l2 q9878"): the page draws the whole
    job from it, a few bytes for a job of any size whose frames finish roughly in order."""
    runs: list[list] = []
    for state in frames_of(job=job).values_list("state", flat=True):
        code = STATE_CODES[FrameState(state)]
        if runs and runs[-1][0] == code:
            runs[-1][1] += 1
        else:
            runs.append([code, 1])
    return " ".join(f"{code}{n}" for code, n in runs)


def settled_results(*, job: Job) -> QuerySet[Frame]:
    return job.frames.filter(state=FrameState.SETTLED).exclude(result_key="").order_by("number", "tile_y", "tile_x")


def tiles_of(*, job_id: int, number: int) -> list[Frame]:
    """The tiles of frame `number` of a tiled still, row-major from the top-left; [] for an untiled frame."""
    return list(
        Frame.objects.filter(job_id=job_id, number=number, tile_x__isnull=False)
        .select_related("job")
        .order_by("tile_y", "tile_x")
    )


def current_assemblies(*, job: Job) -> dict[int, AssembledFrame]:
    """The job's assembled stills by frame number, those whose tiles are all still settled with the results they
    were stitched from (a tile re-rendered after a dispute makes its still wait for the next assembly)."""
    if job.tile_side == 1:
        return {}
    settled: dict[int, list[str | None]] = {}
    for number, state, key in (
        job.frames.filter(tile_x__isnull=False)
        .order_by("number", "tile_y", "tile_x")
        .values_list("number", "state", "result_key")
    ):
        settled.setdefault(number, []).append(key if state == FrameState.SETTLED else None)
    return {still.number: still for still in job.assembled_frames.all() if still.tile_keys == settled.get(still.number)}


@dataclass(frozen=True)
class Still:
    """A tiled still on the job page: how far its tiles are, and its assembled image once current."""

    number: int
    tiles: int
    settled: int
    assembled: AssembledFrame | None

    @property
    def assembling(self) -> bool:
        return self.assembled is None and self.settled == self.tiles


def stills_of(*, job: Job) -> list[Still]:
    """The job's tiled stills by frame number ([] for an untiled job)."""
    if job.tile_side == 1:
        return []
    assembled = current_assemblies(job=job)
    counts = (
        job.frames.filter(tile_x__isnull=False)
        .values("number")
        .order_by("number")
        .annotate(tiles=Count("pk"), settled=Count("pk", filter=Q(state=FrameState.SETTLED)))
    )
    return [Still(row["number"], row["tiles"], row["settled"], assembled.get(row["number"])) for row in counts]


def stills_unassembled(*, settled_since: datetime, limit: int = 100) -> list[tuple[int, int]]:
    """(job id, frame number) of tiled stills whose tiles are all settled, the last one since `settled_since`, and
    that have no image assembled after that last settlement: those whose assembly message was lost."""
    assembled_at = AssembledFrame.objects.filter(job_id=OuterRef("job_id"), number=OuterRef("number")).values(
        "assembled_at"
    )[:1]
    recent = Frame.objects.filter(tile_x__isnull=False, settled_at__gte=settled_since).values("job_id")
    rows = (
        Frame.objects.filter(tile_x__isnull=False, job_id__in=recent)
        .values("job_id", "number")
        .annotate(
            tiles=Count("pk"),
            settled=Count("pk", filter=Q(state=FrameState.SETTLED)),
            last=Max("settled_at"),
            assembled=Subquery(assembled_at),
        )
        .filter(settled=F("tiles"))
        .filter(Q(assembled__isnull=True) | Q(assembled__lt=F("last")))
        .order_by("last")[:limit]
    )
    return [(row["job_id"], row["number"]) for row in rows]


def leased_count_drift() -> dict[int, tuple[int, int]]:
    """Artists whose kept count of leased frames (`LeasedCount`, summed over its slots) differs from the frames
    leased now, as {artist id: (kept, counted)}: none while the trigger keeps it. Empty on SQLite, which keeps
    no count."""
    if connection.vendor != "postgresql":
        return {}
    kept = dict(LeasedCount.objects.values_list("owner_id").annotate(n=Sum("frames")).values_list("owner_id", "n"))
    counted = dict(
        Frame.objects.filter(state=FrameState.LEASED)
        .values_list("job__owner_id")
        .annotate(n=Count("pk"))
        .values_list("job__owner_id", "n")
    )
    owners = kept.keys() | counted.keys()
    return {o: (kept.get(o, 0), counted.get(o, 0)) for o in sorted(owners) if kept.get(o, 0) != counted.get(o, 0)}
