"""Job and frame services: quoting, accepting (escrow hold), cancelling (refund), settling frames, finishing. The
state writes themselves are `jobs.lifecycle`'s moves.

Lock order, everywhere: a job's frames first (ascending id), then the job row. Dispatch and disputes lock a
frame and then touch its job, so taking the job first here could deadlock against them.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from functools import partial

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from marketplace import blobs
from marketplace.jobs import assembly, conf, extensions, lifecycle, pricing, selectors
from marketplace.jobs.errors import FundsInsufficient, JobNotFound, JobRefused
from marketplace.jobs.models import AssembledFrame, Frame, Job
from marketplace.jobs.states import FRAME_CANCELLABLE, FRAME_OPEN, JOB_LIVE, FrameState, JobState
from marketplace.jobs.tiles import smallest_tile, tile_rects
from marketplace.ledger.services import InsufficientFunds, hold_escrow, refund_escrow, release_escrow
from marketplace.logs import subject_scope
from marketplace.money import tokens
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import idle_capacity
from marketplace.scenes.models import Scene
from marketplace.scenes.series import scene_series

log = logging.getLogger("jobs")

# --- quoting --------------------------------------------------------------------------------


def _bounded(name: str, value: object, lo: int, hi: int, *, from_scene: bool) -> int:
    # bool is an int subclass: True is not a frame number.
    if type(value) is not int:
        raise JobRefused(f"{name} must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        hint = " (the scene's own setting: choose a value in range)" if from_scene else ""
        raise JobRefused(f"{name} must be between {lo} and {hi}, got {value}{hint}")
    return value


def _scene_default(report: dict, key: str) -> object:
    if key in ("resolution_x", "resolution_y"):
        # Jobs pin the pixels actually rendered: the scene's resolution x its percentage.
        effective = report.get("effective_width" if key == "resolution_x" else "effective_height")
        if effective is not None:
            return effective
        return report.get(key, 0) * report.get("resolution_percentage", 100) // 100
    return report.get(key, 1 if key == "frame_step" else None)


@transaction.atomic
def job_quote(
    *,
    owner,
    scene: Scene | int,
    name: str = "",
    frame_start: int | None = None,
    frame_end: int | None = None,
    frame_step: int | None = None,
    resolution_x: int | None = None,
    resolution_y: int | None = None,
    samples: int | None = None,
    output_format: str = "PNG",
    priority: int = 0,
    max_price_per_frame: int | None = None,
    use_denoising: bool | None = None,
    seed: int = 0,
    tiles: int = 1,
) -> Job:
    """Price a render of the owner's READY scene and store it as a QUOTED job. Nothing is held yet.

    Unset settings come from the scene's inspection report; every value is checked against the scenes app's
    limits (resolution and frame count) and 1..MAX_SAMPLES samples. `tiles` > 1 splits a still (a job of one
    frame, not denoised) into a tiles x tiles grid rendered by separate nodes, at the price of the whole still.
    Raises JobNotFound for anyone else's scene, JobRefused (nothing stored) for anything else.
    """
    scene_id = scene.pk if isinstance(scene, Scene) else scene
    found = (
        Scene.objects.filter(pk=scene_id, owner=owner, deleted_at__isnull=True).first()
        if type(scene_id) is int
        else None
    )
    if found is None:
        raise JobNotFound("no such scene")
    scene = found
    if scene.status != Scene.Status.READY:
        why = f": {scene.refusal}" if scene.refusal else ""
        raise JobRefused(f"scene {scene.name!r} is {scene.get_status_display().lower()}, not ready to render{why}")
    if not (owner.is_artist or owner.is_market_admin):
        raise JobRefused("only artist accounts can order renders")
    if extensions.wallet_frozen(user=owner):
        raise JobRefused("your wallet owes tokens after a refunded or disputed top-up: settle it before new jobs")
    report = scene.report
    asked = {
        "frame_start": frame_start,
        "frame_end": frame_end,
        "frame_step": frame_step,
        "resolution_x": resolution_x,
        "resolution_y": resolution_y,
        "samples": samples,
    }
    limits = {
        "frame_start": (conf.MIN_FRAME, conf.MAX_FRAME),
        "frame_end": (conf.MIN_FRAME, conf.MAX_FRAME),
        "frame_step": (1, conf.MAX_FRAME),
        "resolution_x": (conf.MIN_SIDE, conf.MAX_SIDE),
        "resolution_y": (conf.MIN_SIDE, conf.MAX_SIDE),
        "samples": (1, conf.MAX_SAMPLES),
    }
    values = {}
    for key, value in asked.items():
        from_scene = value is None
        values[key] = _bounded(
            key, _scene_default(report, key) if from_scene else value, *limits[key], from_scene=from_scene
        )
    if values["frame_end"] < values["frame_start"]:
        raise JobRefused(f"frame_end ({values['frame_end']}) is before frame_start ({values['frame_start']})")
    frames = len(range(values["frame_start"], values["frame_end"] + 1, values["frame_step"]))
    if frames > conf.MAX_FRAMES:
        raise JobRefused(f"{frames} frames is more than the limit of {conf.MAX_FRAMES} per job")
    if use_denoising is None:
        use_denoising = bool(report.get("use_denoising", False))
    elif type(use_denoising) is not bool:
        raise JobRefused(f"use_denoising must be true or false, got {use_denoising!r}")
    if output_format not in Job.Output.values:
        raise JobRefused(f"output_format must be one of {', '.join(Job.Output.values)}, got {output_format!r}")
    priority = _bounded("priority", priority, 0, conf.MAX_PRIORITY, from_scene=False)
    seed = _bounded("seed", seed, 0, 2**31 - 1, from_scene=False)
    if max_price_per_frame is not None:
        max_price_per_frame = _bounded("max_price_per_frame", max_price_per_frame, 0, 10**15, from_scene=False)
    name = (name or scene.name).strip()[:200] or f"scene {scene.pk}"
    tiles = _tile_side_checked(
        tiles, frames=frames, width=values["resolution_x"], height=values["resolution_y"], use_denoising=use_denoising
    )

    quote = pricing.quote_for(
        frames=frames,
        width=values["resolution_x"],
        height=values["resolution_y"],
        samples=values["samples"],
        calibration=pricing.calibration_from_report(report),
        idle_scores=idle_capacity(),
        tile_side=tiles,
        priority=priority,
    )
    if max_price_per_frame is not None and quote.price_per_frame > max_price_per_frame:
        raise JobRefused(
            f"the price per frame would be {tokens(quote.price_per_frame)} tokens, above your maximum "
            f"of {tokens(max_price_per_frame)}: lower the resolution or samples, or raise the maximum"
        )
    return Job.objects.create(
        owner=owner,
        scene=scene,
        name=name,
        **values,
        seed=seed,
        use_denoising=use_denoising,
        output_format=output_format,
        priority=priority,
        max_price_per_frame=max_price_per_frame,
        price_per_frame=quote.price_per_frame,
        quote=quote.as_json(),
        tile_side=tiles,
        blender_series=scene_series(report),
    )


def _tile_side_checked(side: object, *, frames: int, width: int, height: int, use_denoising: bool) -> int:
    side = _bounded("tiles", side, 1, conf.MAX_TILE_SIDE, from_scene=False)
    if side == 1:
        return side
    if frames != 1:
        raise JobRefused(
            f"only a still can be split into tiles, and this job has {frames} frames: render one frame "
            f"(frame_end = frame_start) or do not split"
        )
    if use_denoising:
        raise JobRefused(
            "a denoised image cannot be split into tiles: the denoiser needs the whole image, and tiles "
            "denoised apart show seams. Turn denoising off or do not split"
        )
    tile_w, tile_h = smallest_tile(width=width, height=height, side=side)
    if min(tile_w, tile_h) < conf.MIN_TILE_SIDE:
        most = min(min(width, height) // conf.MIN_TILE_SIDE, conf.MAX_TILE_SIDE)
        advice = f"split it into at most {most}\N{MULTIPLICATION SIGN}{most} tiles" if most > 1 else "do not split it"
        raise JobRefused(
            f"a {width}\N{MULTIPLICATION SIGN}{height} image in {side}\N{MULTIPLICATION SIGN}{side} "
            f"tiles has tiles of {tile_w}\N{MULTIPLICATION SIGN}{tile_h} px, under the "
            f"{conf.MIN_TILE_SIDE} px a tile needs on each side: {advice}"
        )
    return side


# --- accepting and cancelling ---------------------------------------------------------------


def _job_of(*, job_id: int, owner) -> Job:
    job = Job.objects.filter(pk=job_id, owner=owner).first()
    if job is None:
        raise JobNotFound("no such job")
    return job


@transaction.atomic
def job_accept(*, job_id: int, owner) -> Job:
    """QUOTED -> QUEUED: create the frames and hold their total in escrow, all or nothing.

    Accepting an already accepted job returns it unchanged (a double click holds once).
    """
    job = _job_of(job_id=job_id, owner=owner)
    if job.accepted_at is not None:
        return job
    if job.state != JobState.QUOTED:
        raise JobRefused(f"this quote was {job.get_state_display().lower()} and can no longer be accepted")
    if job.quote_expired:
        raise JobRefused(
            f"this quote expired at {job.quote_expires_at:%Y-%m-%d %H:%M} UTC (quotes hold for "
            f"{conf.QUOTE_VALID_HOURS} hours): get a new quote"
        )
    if extensions.wallet_frozen(user=owner):
        raise JobRefused("your wallet owes tokens after a refunded or disputed top-up: settle it before new jobs")
    if not lifecycle.job_open(job_id=job.pk):
        job.refresh_from_db()
        if job.accepted_at is not None:  # a concurrent accept won
            return job
        raise JobRefused(f"this quote was {job.get_state_display().lower()} and can no longer be accepted")
    frames = lifecycle.frames_create(frames=_frames_of(job))  # their event asks dispatch to match them
    total = sum(frame.price for frame in frames)
    if total:
        try:
            hold_escrow(artist=owner, job_ref=job.escrow_ref, amount=total, key=f"hold:job:{job.pk}")
        except InsufficientFunds as exc:
            # Raising inside this atomic block rolls back the frames and the state change too.
            raise FundsInsufficient(
                f"this job needs {tokens(total)} tokens in your wallet: top up and accept again"
            ) from exc
    job.refresh_from_db()
    return job


def _frames_of(job: Job) -> list[Frame]:
    """The frames to render: one per frame number, or one per tile of a tiled still, sharing its price."""
    if job.tile_side == 1:
        return [Frame(job=job, number=n, price=job.price_per_frame) for n in job.frame_numbers]
    rects = tile_rects(width=job.resolution_x, height=job.resolution_y, side=job.tile_side)
    prices = pricing.tile_prices(price=job.price_per_frame, rects=rects)
    return [
        Frame(job=job, number=n, tile_x=x, tile_y=y, tile_w=w, tile_h=h, price=price)
        for n in job.frame_numbers
        for (x, y, w, h), price in zip(rects, prices, strict=True)
    ]


@dataclass(frozen=True)
class JobCancelled:
    job: Job
    frames_cancelled: int
    refunded: int  # micro-tokens returned to the wallet now


@transaction.atomic
def job_cancel(*, job_id: int, owner) -> JobCancelled:
    """Stop a job: frames not yet rendered are cancelled (their leases revoked) and exactly their price is
    refunded. Rendered frames stay payable; when they settle, `job_finish_if_complete` returns what is left.
    Cancelling a cancelled job changes nothing.
    """
    job = _job_of(job_id=job_id, owner=owner)
    if job.state == JobState.CANCELLED:
        return JobCancelled(job, 0, 0)
    if job.state in (JobState.DONE, JobState.FAILED):
        raise JobRefused(f"this job is already {job.get_state_display().lower()}")
    if job.state == JobState.QUOTED:  # a quote holds no money and has no frames
        if not lifecycle.job_cancel(job_id=job.pk, current=JobState.QUOTED):
            raise JobRefused("this quote changed meanwhile: reload the page")
        job.refresh_from_db()
        return JobCancelled(job, 0, 0)
    # Not locked here: frames_cancel takes the leases, then the frames (the order a report takes them), and the
    # job comes after its frames. Its conditional moves say which frames this cancel stopped; prices never change.
    prices = dict(Frame.objects.filter(job=job, state__in=FRAME_CANCELLABLE).values_list("pk", "price"))
    # Their leases are revoked with them, so the nodes stop rendering them.
    cancelled = lifecycle.frames_cancel(
        frame_ids=list(prices), current=FRAME_CANCELLABLE, reason="cancelled by the artist"
    )
    job = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
    if job.state in (JobState.CANCELLED, JobState.DONE, JobState.FAILED):  # changed while we waited for locks
        if job.state == JobState.CANCELLED:  # a concurrent cancel stopped the frames first: `cancelled` is empty
            return JobCancelled(job, 0, 0)
        raise JobRefused(f"this job is already {job.get_state_display().lower()}")  # rolls back the frames too
    refund = sum(prices[frame_id] for frame_id in cancelled)
    lifecycle.job_cancel(job_id=job.pk, current=job.state)
    if refund:
        refund_escrow(artist=owner, job_ref=job.escrow_ref, amount=refund, key=f"refund:job:{job.pk}:cancel")
    transaction.on_commit(lambda: job_finish_if_complete(job_id=job.pk))  # sweeps leftovers once nothing is open
    job.refresh_from_db()
    return JobCancelled(job, len(cancelled), refund)


@dataclass(frozen=True)
class JobRetried:
    job: Job
    frames_requeued: int
    held: int  # micro-tokens held in escrow again (a finished job's leftover had been refunded)


@transaction.atomic
def job_allow_refused_nodes(*, job_id: int, owner) -> int:
    """The artist's choice for frames that wait only because every online node was refused on this job (its
    result failed a check, lost a dispute, or it failed the job 3 times): let those nodes render them again.
    Returns how many nodes were let back."""
    job = _job_of(job_id=job_id, owner=owner)
    if job.state not in JOB_LIVE:
        raise JobRefused(f"this job is {job.get_state_display().lower()}: nothing waits for a node")
    cleared = extensions.node_blocks_clear(job_id=job.pk)
    if not cleared:
        raise JobRefused("no node is kept off this job")
    return cleared


@transaction.atomic
def job_retry_failed(*, job_id: int, owner) -> JobRetried:
    """Send a job's failed frames back to the queue, e.g. after the nodes that failed them ran out of memory.

    Failures before the retry no longer count toward failing a frame (nodes blocked for the job stay blocked).
    A running job's escrow still holds the failed frames' price; a finished job's leftover was refunded, so
    their price is held again, all or nothing (key hold:job:<id>:retry:<n>).
    """
    job = _job_of(job_id=job_id, owner=owner)
    if job.state not in (JobState.RUNNING, JobState.DONE, JobState.FAILED):
        raise JobRefused(f"a {job.get_state_display().lower()} job has no failed frames to retry")
    if extensions.wallet_frozen(user=owner):
        raise JobRefused("your wallet owes tokens after a refunded or disputed top-up: settle it before new work")
    # Frames first, then the job: the module's lock order.
    failed = list(
        Frame.objects.select_for_update(no_key=True)
        .filter(job=job, state=FrameState.FAILED)
        .order_by("pk")
        .values_list("pk", "price")
    )
    job = Job.objects.select_for_update(no_key=True).get(pk=job.pk)
    if not failed:
        raise JobRefused("this job has no failed frames to retry")
    if job.retries >= conf.MAX_RETRIES:
        raise JobRefused(
            f"this job's failed frames were retried {job.retries} times already, the most a job "
            f"allows ({conf.MAX_RETRIES}): fix the scene and submit a new job"
        )
    if job.state not in (JobState.RUNNING, JobState.DONE, JobState.FAILED):  # changed while we waited
        raise JobRefused(f"this job is {job.get_state_display().lower()} now")
    lifecycle.frames_retry(frame_ids=[frame_id for frame_id, _ in failed])  # their event asks for matching
    held = 0
    if job.state != JobState.RUNNING:
        held = sum(price for _, price in failed)
        if held:
            try:
                hold_escrow(
                    artist=owner, job_ref=job.escrow_ref, amount=held, key=f"hold:job:{job.pk}:retry:{job.retries + 1}"
                )
            except InsufficientFunds as exc:
                raise FundsInsufficient(
                    f"retrying needs {tokens(held)} tokens in your wallet: top up and retry again"
                ) from exc
        lifecycle.job_reopen(job_id=job.pk, current=job.state)
    Job.objects.filter(pk=job.pk).update(retries=F("retries") + 1)
    job.refresh_from_db()
    return JobRetried(job, len(failed), held)


# --- settling and finishing -----------------------------------------------------------------


@subject_scope()  # its line names the frame paid, not the lease or node of the caller (a verifier's report)
@transaction.atomic
def frame_settle(*, frame_id: int, node_id: int) -> bool:
    """Pay a rendered (and, if checked, verified) frame from escrow, once. False when already settled.

    Each settlement posts under its own key (`Frame.settlement_key`): a frame re-rendered after an upheld
    dispute is paid again.
    """
    frame = Frame.objects.select_for_update(of=("self",), no_key=True).select_related("job__owner").get(pk=frame_id)
    if frame.state not in (FrameState.RENDERED, FrameState.VERIFYING):
        return False
    # Its event asks jobs to finish the job once no frame is open.
    if not lifecycle.frame_settle(frame_id=frame.pk, job_id=frame.job_id, current=frame.state, node_id=node_id):
        return False
    frame.settle_count += 1
    provider = WorkerNode.objects.select_related("owner").get(pk=node_id).owner
    job = frame.job
    if frame.price:
        release_escrow(
            artist=job.owner,
            job_ref=job.escrow_ref,
            provider=provider,
            amount=frame.price,
            key=frame.settlement_key,
            memo=f"frame {frame.number} of job {job.pk} rendered",
        )
    frames_settled_log_after_commit(
        paid=[{"frame_id": frame.pk, "job_id": job.pk, "node_id": node_id, "price_micro": frame.price}]
    )
    if frame.tile_x is not None:
        frame_assemble_after_commit(job_id=job.pk, number=frame.number)
    return True


def frames_settled_log_after_commit(*, paid: list[dict]) -> None:
    """One `frame_settled` line per frame paid (its fields in `paid`; an operator follows a frame by its id), once
    the payment commits: never for one rolled back, and not while the transaction still holds the balance rows
    every settlement takes (the platform's fee account, the provider's wallet)."""
    transaction.on_commit(partial(_frames_settled_log, paid))


@subject_scope()  # perhaps run in the caller's context: each line names its own frame
def _frames_settled_log(paid: list[dict]) -> None:
    for fields in paid:
        log.info("event=frame_settled", extra=fields)


def frame_assemble_after_commit(*, job_id: int, number: int) -> None:
    from marketplace.jobs.tasks import frame_assemble as assemble_task  # the tasks module imports this one

    transaction.on_commit(lambda: assemble_task.delay(job_id, number))


def job_finish_if_complete(*, job_id: int) -> bool:
    """When no frame is open any more: the job is DONE (FAILED if none was rendered) and the leftover escrow
    returns to the artist. For a cancelled job only the leftover is returned, once its rendered frames are
    settled or failed. True when something changed.

    Every frame that leaves the open states calls this after its commit, so the last one always sees the
    others closed: a live job with open frames is answered by one read, without locking its frames.
    """
    if Frame.objects.filter(job_id=job_id, job__state__in=JOB_LIVE, state__in=FRAME_OPEN).exists():
        return False
    return _job_finish(job_id=job_id)


@transaction.atomic
def _job_finish(*, job_id: int) -> bool:
    # Frames first, then the job: the module's lock order.
    open_frames = list(
        Frame.objects.select_for_update(no_key=True)
        .filter(job_id=job_id, state__in=FRAME_OPEN)
        .order_by("pk")
        .values_list("pk", "state")
    )
    job = Job.objects.select_for_update(no_key=True).select_related("owner").get(pk=job_id)
    if job.state == JobState.CANCELLED:
        # A cancelled job renders nothing more: a frame sent back to the queue (its result was rejected) ends here.
        queued = [frame_id for frame_id, state in open_frames if state == FrameState.QUEUED]
        lifecycle.frames_cancel(frame_ids=queued, current=(FrameState.QUEUED,), reason="job cancelled")
        if job.frames.filter(state__in=FRAME_OPEN).exists():
            return False
    elif job.state in JOB_LIVE:
        # Read again under the job's lock: a retry may have re-queued failed frames since the read above.
        if open_frames or job.frames.filter(state__in=FRAME_OPEN).exists():
            return False
        target = JobState.DONE if job.frames.filter(state=FrameState.SETTLED).exists() else JobState.FAILED
        lifecycle.job_close(job_id=job.pk, current=job.state, target=target)
    else:
        return False
    # One key per ending: an upheld dispute can reopen a DONE job and hold its price in escrow again.
    k = job.finish_count + 1
    refunded = refund_escrow(artist=job.owner, job_ref=job.escrow_ref, key=f"refund:job:{job.pk}:final:{k}")
    if refunded is not None:
        Job.objects.filter(pk=job.pk).update(finish_count=k)
    return refunded is not None or job.state != JobState.CANCELLED


# --- assembling tiled stills ----------------------------------------------------------------


def _tile_bytes(tile: Frame) -> bytes:
    """A settled tile's image, checked against the digest frozen at its report (AssemblyError if it differs)."""
    try:
        return blobs.blob_read_checked(tile.result_key, sha256=tile.result_sha256)
    except blobs.DigestMismatch as exc:  # logged as an event by blobs
        raise assembly.AssemblyError(f"the tile at x={tile.tile_x}, y={tile.tile_y}: {exc}") from exc


def frame_assemble(*, job_id: int, number: int) -> AssembledFrame | None:
    """Stitch frame `number` of a tiled still from its settled tiles; store it and its thumbnail, and record it.

    None while a tile is not settled, and for a frame that is not tiled. The same tiles give the recorded
    AssembledFrame back untouched; a tile re-rendered since (after an upheld dispute) is stitched in anew. Delivery,
    not money: the job finishes without waiting for it. Images are read and written outside any transaction; the
    record is written under the tiles' row locks, only if they still hold the stitched results. Raises
    assembly.AssemblyError for tiles that cannot make the frame, OSError when storage fails.
    """
    tiles = selectors.tiles_of(job_id=job_id, number=number)
    if not tiles or any(tile.state != FrameState.SETTLED or not tile.result_key for tile in tiles):
        return None
    keys = [tile.result_key for tile in tiles]
    known = AssembledFrame.objects.filter(job_id=job_id, number=number).first()
    if known is not None and known.tile_keys == keys:
        return known
    job = tiles[0].job
    stitched = assembly.stitch(
        width=job.resolution_x,
        height=job.resolution_y,
        output_format=job.output_format,
        # tiles_of has tiles only, each with its rectangle.
        tiles=((rect, _tile_bytes(tile)) for tile in tiles if (rect := tile.tile_rect) is not None),
    )
    # Content-addressed: assembling the same tiles twice (a redelivered task) writes the same keys.
    sha = hashlib.sha256(stitched.data).hexdigest()
    result_key = f"results/job{job_id}/frame{number:06d}-{sha[:16]}.{stitched.extension}"
    thumbnail_key = f"thumbs/job{job_id}-frame{number:06d}-{sha[:16]}.png"
    blobs.blob_put(key=result_key, fileobj=io.BytesIO(stitched.data))
    blobs.blob_put(key=thumbnail_key, fileobj=io.BytesIO(stitched.thumbnail))
    with transaction.atomic():
        held = list(
            Frame.objects.select_for_update(no_key=True)
            .filter(pk__in=[tile.pk for tile in tiles])
            .order_by("pk")
            .values_list("pk", "state", "result_key")
        )
        current = {pk: key for pk, state, key in held if state == FrameState.SETTLED}
        if [current.get(tile.pk) for tile in tiles] != keys:
            return None  # a tile was disputed meanwhile: its next settlement assembles the frame again
        previous = AssembledFrame.objects.filter(job_id=job_id, number=number).first()
        if previous is not None and previous.tile_keys == keys:
            return previous  # a concurrent run recorded the same tiles first
        assembled, _ = AssembledFrame.objects.update_or_create(
            job_id=job_id,
            number=number,
            defaults={
                "result_key": result_key,
                "result_sha256": sha,
                "thumbnail_key": thumbnail_key,
                "tile_keys": keys,
                "assembled_at": timezone.now(),
            },
        )
        if previous is not None and previous.result_key != result_key:  # the superseded image and thumbnail
            transaction.on_commit(partial(blobs.blob_delete, previous.result_key))
            transaction.on_commit(partial(blobs.blob_delete, previous.thumbnail_key))
    return assembled
