"""Matching frames to nodes, leases, agent reports, and the reaper.

Every function here is one transaction. Claims are conditional UPDATEs; on Postgres, rows are picked
with SELECT … FOR UPDATE SKIP LOCKED so many matchers never hand one frame or node out twice.
Queue messages are sent after commit: a message only tells a node that a lease exists.
"""

from __future__ import annotations

import functools
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from http import HTTPStatus

from django.db import connection, connections, transaction
from django.db.models import Case, Exists, F, OuterRef, QuerySet, Value, When
from django.utils import timezone

from marketplace import blobs
from marketplace.accounts.tokens import secret_hash, secret_matches
from marketplace.celery import app, delay_once, pending_clear
from marketplace.compiled import instance, state_literal
from marketplace.dispatch import conf, heartbeats, hooks, queues
from marketplace.dispatch.manifests import Crop, crop_manifest, image_size, noisy_key
from marketplace.dispatch.models import FrameLease, JobNodeBlock, UploadsClearedTo
from marketplace.errors import Conflict
from marketplace.jobs import events, lifecycle, pricing
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FrameState
from marketplace.logs import bind, lease_fields
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import available_nodes, heartbeat_pace
from marketplace.nodes.services import node_ban as node_ban_mark
from marketplace.nodes.services import node_status_sync, node_status_sync_due, node_status_sync_one
from marketplace.scenes.models import Scene
from render_kernels import WrongSize, image_size_check, result_summary
from workers.contract import RenderManifest

log = logging.getLogger("dispatch")


class LeaseRefused(Conflict):
    """A report or request that does not match an active lease of this node. Changes nothing."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.CONFLICT) -> None:
        super().__init__(message)
        self.status = status


def _locking(qs):
    # SKIP LOCKED lets concurrent matchers pass over rows another matcher holds (Postgres only).
    if connection.vendor == "postgresql":
        return qs.select_for_update(skip_locked=True, of=("self",), no_key=True)
    return qs.select_for_update(no_key=True)


# --- matching -------------------------------------------------------------------------------


def matchable_nodes(*, now=None, finishing_lease_id: int | None = None):
    """The nodes the matcher may lease to: the market's available nodes, the same ones quotes count."""
    return available_nodes(now, finishing_lease_id=finishing_lease_id)


# What a lease leaves unread of its scene: the inspection's report and warnings, which list every file a production
# scene references (tens to hundreds of KB). A lease's manifest reads the active camera from its own column
# (`Scene.active_camera`); read whole, every lease decoded the report (bench_dispatch BENCH_SCENE_FILES). Deferred:
# loaded on first access.
LEASE_SCENE_DEFERRED = ("report", "warnings")


def scene_deferred(path: str) -> list[str]:
    """`LEASE_SCENE_DEFERRED` of the scene at `path` (select_related's form), for a queryset's `defer()`."""
    return [f"{path}__{name}" for name in LEASE_SCENE_DEFERRED]


def manifest_for(frame: Frame, *, node: WorkerNode, crop: dict | None = None) -> dict:
    """The pinned render settings, built through the agent contract (workers.contract.RenderManifest: a value
    outside its limits raises ContractError here rather than on a node); a verify lease gets the same manifest
    narrowed to its crop, in the format it is compared in (see verification.crops), so crop and frame render
    identically."""
    job = frame.job
    scene = job.scene
    tile = frame.tile_rect
    # Past this the agent stops the render as "slower than calibrated" (jobs.pricing, issue 11); crops have none.
    pixels = tile[2] * tile[3] if tile else job.resolution_x * job.resolution_y
    budget = (
        None
        if crop
        else pricing.calibrated_budget_seconds(
            job.quote or {}, units=pixels * job.samples, bench_score=getattr(node, "bench_score", 0.0)
        )
    )
    manifest = RenderManifest(
        # No job or frame id: nothing that names the job reaches a node (a canary could be told apart by it).
        frame=frame.number,
        samples=job.samples,
        seed=job.seed,
        resolution_x=job.resolution_x,
        resolution_y=job.resolution_y,
        file_format=job.output_format,
        use_denoising=job.use_denoising,
        camera=scene.active_camera,
        device=node.device_type,
        blender_series=job.blender_series,
        scene_sha256=scene.sha256,
        scene_kind=scene.kind,
        blend_path=scene.blend_path,
        # A tile of a still renders only its rectangle (pixels, y from the top), cropped to it.
        border=tile,
        max_render_seconds=conf.MAX_RENDER_SECONDS,
        calibrated_budget_seconds=budget,
    )
    if crop:
        return RenderManifest.from_dict(crop_manifest(manifest.as_dict(), Crop.from_dict(crop))).as_dict()
    return manifest.as_dict()


def result_key_for(*, manifest: dict, frame_id: int) -> str:
    """Where the agent uploads a new lease's image. A random name makes it unique per lease and lets it be
    known before the row exists (one INSERT, no follow-up UPDATE). It names no job (the upload URL carries it
    readable to the node); `frame_id` is kept by the lease row, not the key."""
    ext = "exr" if manifest.get("file_format") == "OPEN_EXR" else "png"  # crops may be either
    return f"results/{secrets.token_hex(16)}.{ext}"


@dataclass(frozen=True)
class Delivery:
    node_id: int
    lease_id: int
    token: str
    kind: str
    # The lease row as the matcher wrote it (its frame, job and scene loaded): its details need no second read.
    lease: FrameLease | None = field(default=None, repr=False, compare=False)


def _lease_open(*, frame: Frame, node: WorkerNode, kind: str, crop: dict | None = None) -> Delivery:
    token = secrets.token_urlsafe(24)
    manifest = manifest_for(frame, node=node, crop=crop)
    upload = result_key_for(manifest=manifest, frame_id=frame.pk)
    lease = FrameLease.objects.create(
        frame=frame,
        node=node,
        kind=kind,
        token_hash=secret_hash(token),
        crop=crop,
        manifest=manifest,
        result_key=upload,
        upload_key=upload,
        expires_at=timezone.now() + timedelta(seconds=heartbeats.lease_seconds()),
    )
    node_status_sync(node_ids=[node.pk])
    log.info("event=lease_granted", extra=lease_fields(lease))
    delivery = Delivery(node_id=node.pk, lease_id=lease.pk, token=token, kind=kind)
    transaction.on_commit(
        lambda: queues.deliver(
            node_id=delivery.node_id,
            message={"lease": delivery.lease_id, "token": delivery.token, "kind": delivery.kind},
        )
    )
    return delivery


def lease_create_for_node(*, node: WorkerNode) -> Delivery | None:
    """Give one queued frame to this idle node, if one fits (a matching round of one node: dispatch.batch; the
    node's row is read again there). None when the node is taken or nothing fits."""
    from marketplace.dispatch.batch import leases_create  # builds on this module

    deliveries = leases_create(limit=1, node=node)
    return deliveries[0] if deliveries else None


def lease_after_report(*, node: WorkerNode, node_busy: bool) -> Delivery | None:
    """After an accepted report (`lease_report(match_after=False)`): the node's next lease now, rather than
    after a Celery hop to the matcher. None when it took its next lease ahead already (`lease_next`), when
    nothing fits or when the node is not matchable; a matching round is asked for then unless it is busy.
    `node_busy`: what the report's status sync found (`ReportOutcome.node_busy`)."""
    if node_busy:
        return None
    delivery = lease_create_for_node(node=node)
    if delivery is None:
        match_request()  # e.g. a heartbeat held the node's row: the round leases it soon
    return delivery


def lease_next(*, node: WorkerNode, lease_id: int, token: str) -> Delivery | None:
    """The agent is finishing this lease (its render has ended, or is about to: the agent asks a moment before it
    expects the end) and will upload its result: lease the node its next frame now, so that it renders while the
    result uploads and is reported (no gap between frames, issue 17). A node takes at most one lease ahead: None
    when it holds another active lease already, or when nothing fits."""
    from marketplace.dispatch.batch import Finishing, leases_create  # builds on this module

    # The node's lock checks the lease (its own, active, unexpired, this token) in the same statement and reads its
    # frame and job. Only when it took no node is the lease read again: to say why if it is at fault (404, 403,
    # 409), or that the node may not take work now (None).
    finishing = Finishing(lease_id=lease_id, token=token)
    deliveries = leases_create(limit=1, node=node, finishing=finishing)
    if finishing.frame_id is None:
        _require_active(_lease_of_node(node=node, lease_id=lease_id, token=token))
        return None
    bind(
        lease_id=lease_id,
        frame_id=finishing.frame_id,
        job_id=finishing.job_id,
        node_id=node.pk,
        lease_kind=finishing.kind,
    )
    return deliveries[0] if deliveries else None  # None: nothing fits it now


@transaction.atomic
def verify_lease_create(*, frame_id: int, crop: dict, verifiers: QuerySet[WorkerNode]) -> Delivery | None:
    """FrameLease a crop re-render of a rendered frame to one of `verifiers` (who may verify is verification's
    rule, `verification.policy.verifiers_for`; dispatch only sends). None if none of them is available."""
    frame = Frame.objects.select_related("job__scene").defer(*scene_deferred("job__scene")).get(pk=frame_id)
    # Among them, prefer nodes that already have the scene loaded (it rendered this job), since scene loading
    # dominates small crops.
    candidates = verifiers.annotate(
        knows_job=Exists(FrameLease.objects.filter(node=OuterRef("pk"), frame__job=frame.job_id))
    ).order_by("-knows_job", "last_heartbeat")
    node = _locking(candidates).first()
    if node is None:
        return None
    return _lease_open(frame=frame, node=node, kind=FrameLease.Kind.VERIFY, crop=crop)


def match_frames(*, limit: int = conf.MATCH_ROUND) -> int:
    """FrameLease queued frames to idle nodes until either runs out. Returns the number of leases made."""
    from marketplace.dispatch.batch import leases_create  # builds on this module

    return len(leases_create(limit=limit))


# --- agent side: lease lookup, heartbeats, reports ------------------------------------------


@functools.cache
def _lease_of_node_sql(alias: str, lock: bool) -> str:
    # The agent calls (details, report, release) read their lease by one hand-written statement: the ORM's
    # select_related compile cost ~3 ms of Python per call on this 2-core machine, a third of a report's CPU
    # (bench_dispatch, issue 17). It loads what those calls use; any other field of the frame, job or scene
    # is deferred (loaded on first access), so a caller reading more still gets correct values.
    lease_cols = ", ".join(f"l.{f.column}" for f in FrameLease._meta.concrete_fields)
    frames, jobs, scenes = Frame._meta.db_table, Job._meta.db_table, Scene._meta.db_table
    sql = (
        f"SELECT {lease_cols}, f.job_id AS frame_job_id, f.retried_at AS frame_retried_at, j.scene_id AS job_scene_id,"
        f" s.sha256 AS scene_sha256, s.kind AS scene_kind"
        f" FROM {FrameLease._meta.db_table} l JOIN {frames} f ON f.id = l.frame_id JOIN {jobs} j ON j.id = f.job_id"
        f" JOIN {scenes} s ON s.id = j.scene_id WHERE l.id = %s AND l.node_id = %s"
    )
    features = connections[alias].features
    if lock and features.has_select_for_update_of:
        sql += " FOR NO KEY UPDATE OF l"
    elif lock and features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql


def _lease_of_node(*, node: WorkerNode, lease_id: int, token: str, lock: bool = False) -> FrameLease:
    with connection.cursor() as cur:
        cur.execute(_lease_of_node_sql(connection.alias, lock), [lease_id, node.pk])
        row = cur.fetchone()
    # Another node's lease looks exactly like a missing one: nothing to learn by probing ids.
    if row is None:
        raise LeaseRefused("no such lease for this node", status=HTTPStatus.NOT_FOUND)
    db, width = connection.alias, len(FrameLease._meta.concrete_fields)
    lease = instance(FrameLease, row[:width], using=db)
    job_id, retried_at, scene_id, scene_sha256, scene_kind = row[width:]
    scene = instance(Scene, (scene_id, scene_sha256, scene_kind), using=db, only=("id", "sha256", "kind"))
    job = instance(Job, (job_id, scene_id), using=db, only=("id", "scene_id"))
    job.scene = scene
    lease.frame = instance(Frame, (lease.frame_id, job_id, retried_at), using=db, only=("id", "job_id", "retried_at"))
    lease.frame.job = job
    bind(**lease_fields(lease))  # the rest of this agent call's lines name the lease's frame and job
    if not secret_matches(token or "", lease.token_hash):
        raise LeaseRefused("lease token does not match", status=HTTPStatus.FORBIDDEN)
    return lease


def _require_active(lease: FrameLease) -> None:
    if lease.state != FrameLease.State.ACTIVE:
        raise LeaseRefused(f"lease is {lease.state}, not active: the report changes nothing")
    if lease.expires_at < timezone.now():
        raise LeaseRefused("lease has expired: the frame goes back to the queue")


def lease_details(*, node: WorkerNode, lease_id: int, token: str) -> dict:
    """What the agent needs to do the work: pinned manifest and short-lived URLs for its files only."""
    lease = _lease_of_node(node=node, lease_id=lease_id, token=token)
    _require_active(lease)
    return lease_details_of(lease=lease)


def delivery_details(*, node: WorkerNode, delivery: Delivery) -> dict:
    """`lease_details` of a lease just made for this node (a report's or a `next` call's answer)."""
    if delivery.lease is not None and delivery.lease.node_id == node.pk:
        return lease_details_of(lease=delivery.lease)
    return lease_details(node=node, lease_id=delivery.lease_id, token=delivery.token)


def lease_details_of(*, lease: FrameLease) -> dict:
    """`lease_details` of a lease read or written here already (its frame's job and scene loaded)."""
    scene = lease.frame.job.scene
    details = {
        "lease": lease.pk,
        "kind": lease.kind,
        "expires_at": lease.expires_at.isoformat(),
        "manifest": lease.manifest,
        "scene_url": blobs.signed_url(key=scene.storage_key, method="GET", expires_s=conf.SIGNED_URL_SECONDS),
        "upload_url": blobs.signed_url(
            key=lease.result_key,
            method="PUT",
            expires_s=conf.SIGNED_URL_SECONDS,
            max_bytes=conf.RESULT_MAX_BYTES,
            lease_id=lease.pk,
        ),
    }
    if _needs_noisy_pass(lease):
        details["noisy_upload_url"] = blobs.signed_url(
            key=noisy_key(lease.result_key),
            method="PUT",
            expires_s=conf.SIGNED_URL_SECONDS,
            max_bytes=conf.RESULT_MAX_BYTES,
            lease_id=lease.pk,
        )
    return details


def lease_upload_refusal(*, lease_id: int, key: str) -> str:
    """Why an upload to `key` under lease `lease_id` is refused ("" when allowed): only the lease's own upload
    keys, only while it is active and unexpired. (The blob view also refuses a second write of a key.)"""
    lease = FrameLease.objects.filter(pk=lease_id).only("state", "expires_at", "result_key", "kind", "manifest").first()
    if lease is None:
        return "this upload link belongs to no lease"
    if lease.state != FrameLease.State.ACTIVE:
        return f"the lease is {lease.state}: its result can no longer be written"
    if lease.expires_at < timezone.now():
        return "the lease has expired: its result can no longer be written"
    allowed = set(_uploads_of(lease, upload_key=lease.result_key))
    if key not in allowed or key.startswith(blobs.FROZEN_PREFIX):
        return "this upload link does not belong to this lease"
    return ""


def _uploads_of(lease: FrameLease, *, upload_key: str) -> list[str]:
    """The keys the agent may upload to under `lease`, whose result goes to `upload_key`: it, and a denoised frame's
    pre-denoise pass beside it."""
    return [upload_key] + ([noisy_key(upload_key)] if _needs_noisy_pass(lease) else [])


def _needs_noisy_pass(lease: FrameLease) -> bool:
    # Denoised frames are verified on their pre-denoise pass: crops only reproduce without the denoiser.
    return lease.kind == FrameLease.Kind.RENDER and bool(lease.manifest.get("use_denoising"))


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat answers: each listed lease's state, the node's status, its owner's pause, and when to
    beat next."""

    leases: dict[int, str]
    status: str
    owner_pause: str | None  # how the owner paused the node from the web, or None
    heartbeat_seconds: int  # the farm's heartbeat pace (`nodes.services.heartbeat_pace_update`)


def node_heartbeat(*, node: WorkerNode, lease_ids: list[int], paused: bool = False) -> Heartbeat:
    """Extend this node's listed active leases (up to the frame's render cap); report every lease's state.

    `paused` is the agent's own schedule; it never clears the owner's pause from the web. When the owner paused
    with "give the frame back", the node's active leases are released here (requeued, no failure counted) and
    read "released", so the agent stops rendering them; with "finish" they run to their report.

    Every agent sends one at the farm's pace, which the answer gives, busy or idle: the most frequent call of
    the farm. A beat that changes nothing but times is read in one statement and its times gathered
    (`dispatch.heartbeats`, written for many nodes at once); any other is written here.
    """
    now = timezone.now()
    listed = sorted({int(i) for i in lease_ids[: conf.LEASES_PER_BEAT]})
    agent_state = WorkerNode.AgentState.PAUSED if paused else WorkerNode.AgentState.ONLINE
    facts = heartbeats.beat_facts(node_id=node.pk, lease_ids=listed, now=now)
    if facts is not None and facts.only_times_change(agent_state):
        active = [pk for pk, state in facts.leases.items() if state == FrameLease.State.ACTIVE]
        if heartbeats.gather(node_id=node.pk, at=now, lease_ids=active):
            return Heartbeat(
                leases=facts.leases,
                status=facts.status,
                owner_pause=None,
                heartbeat_seconds=heartbeat_pace().seconds,
            )
    return _node_heartbeat_write(node=node, listed=listed, agent_state=agent_state, now=now)


@transaction.atomic
def _node_heartbeat_write(*, node: WorkerNode, listed: list[int], agent_state: str, now) -> Heartbeat:
    """A heartbeat written at once: four statements, the owner's pause, the leases extended and read, the node's
    heartbeat, its status."""
    # Rows are locked in the order a report and the reaper take them (lease, frame, then the node): writing the
    # node row first deadlocked against a report of the same node under several web workers (cluster test).
    paused_by_owner, pause_mode = WorkerNode.objects.filter(pk=node.pk).values_list(
        "paused_by_owner", "pause_mode"
    ).first() or (False, "")
    if paused_by_owner:
        # Paused: give back what the agent is not rendering (a delivery still in its queue, which a paused agent
        # no longer takes), and with "release" also the frame it is rendering.
        keep = [] if pause_mode == WorkerNode.PauseMode.RELEASE else listed
        given_back = FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).exclude(pk__in=keep)
        _leases_close(leases=list(_locking(given_back.order_by("pk"))), state=FrameLease.State.RELEASED)
    states = _leases_extend(node_id=node.pk, lease_ids=listed, now=now)
    # After a goodbye only a hello brings the node back: a heartbeat still in flight from the exiting agent
    # must not make it count as idle again.
    offline = WorkerNode.AgentState.OFFLINE
    WorkerNode.objects.filter(pk=node.pk).update(
        last_heartbeat=now,
        agent_state=Case(When(agent_state=offline, then=Value(offline)), default=Value(agent_state)),
    )
    status = node_status_sync_one(node_id=node.pk, now=now)
    return Heartbeat(
        leases=states,
        status=status,
        owner_pause=pause_mode if paused_by_owner else None,
        heartbeat_seconds=heartbeat_pace().seconds,
    )


def _leases_extend(*, node_id: int, lease_ids: list[int], now) -> dict[int, str]:
    """Extend the node's listed leases that are active and unexpired (`heartbeats.lease_seconds` from now,
    never past their render cap) and answer every listed lease's state: one statement on Postgres (the SELECT
    reads the rows as they were before the UPDATE, which changes no state)."""
    if not lease_ids:
        return {}
    if connection.vendor != "postgresql":  # SQLite (`make run`) has no UPDATE in a WITH: two statements
        heartbeats.leases_extend_orm(node_id=node_id, lease_ids=lease_ids, at=now)
        return dict(FrameLease.objects.filter(node_id=node_id, pk__in=lease_ids).values_list("pk", "state"))
    expiry = now + timedelta(seconds=heartbeats.lease_seconds())
    table, ops = FrameLease._meta.db_table, connection.ops
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH extended AS (UPDATE {table} SET expires_at = LEAST(%s, created_at + %s * INTERVAL '1 second')"
            f" WHERE node_id = %s AND id = ANY(%s) AND state = 'active' AND expires_at >= %s RETURNING id)"
            f" SELECT id, state FROM {table} WHERE node_id = %s AND id = ANY(%s)",
            [
                ops.adapt_datetimefield_value(expiry),
                conf.MAX_RENDER_SECONDS,
                node_id,
                lease_ids,
                ops.adapt_datetimefield_value(now),
                node_id,
                lease_ids,
            ],
        )
        return dict(cursor.fetchall())


def _leases_close(*, leases: list[FrameLease], state: str, reason: str = "", count_attempt: bool = False) -> int:
    """Close these active leases, which the caller holds locked (released by a goodbye, revoked by a ban): their
    render frames go back to the queue in one statement (`lifecycle.frames_requeue`), their attempts counted
    or not. How many were closed. The caller syncs the nodes' status once it is done with them (node rows last:
    lease, frame, node is the order a report takes them)."""
    if not leases:
        return 0
    FrameLease.objects.filter(pk__in=[lease.pk for lease in leases]).update(
        state=state, finished_at=timezone.now(), error=reason[:2000]
    )
    requeued = lifecycle.frames_requeue(
        frame_ids=[lease.frame_id for lease in leases if lease.kind == FrameLease.Kind.RENDER],
        reason=reason,
        count_attempt=count_attempt,
    )
    if not requeued:  # a requeued frame's event asks for matching already
        _after_commit_match()
    return len(leases)


@transaction.atomic
def node_goodbye(*, node: WorkerNode) -> int:
    """The agent exits cleanly (Ctrl-C, SIGTERM): it stops counting as online at once, and any lease it still
    holds goes back to the queue now instead of after its expiry, its attempt not counted. Returns the number of
    leases released. A lease a report holds is passed over: the report closes it."""
    WorkerNode.objects.filter(pk=node.pk).update(agent_state=WorkerNode.AgentState.OFFLINE)
    held = list(_locking(FrameLease.objects.filter(node=node, state=FrameLease.State.ACTIVE).order_by("pk")))
    released = _leases_close(leases=held, state=FrameLease.State.RELEASED)
    node_status_sync(node_ids=[node.pk])
    return released


@transaction.atomic
def node_ban(*, node_id: int, banned: bool = True) -> int:
    """Ban (or unban) a node: its active leases are revoked and their frames requeued for other nodes."""
    node_ban_mark(node_id=node_id, banned=banned)
    if not banned:
        return 0
    held = FrameLease.objects.filter(node_id=node_id, state=FrameLease.State.ACTIVE).order_by("pk")
    revoked = _leases_close(leases=list(_locking(held)), state=FrameLease.State.REVOKED, reason="node banned")
    if revoked:
        node_status_sync(node_ids=[node_id])
    return revoked


@dataclass(frozen=True)
class SanityResult:
    ok: bool
    reason: str = ""
    sha256: str = ""
    frozen_key: str = ""  # the result, frozen under its SHA-256
    noisy_key: str = ""  # its pre-denoise pass, frozen likewise ("" when none)
    thumbnail: bytes = b""  # a render's thumbnail (PNG), made from the image decoded for the checks


def thumbnail_key_for(*, frame_id: int, sha256: str) -> str:
    """Where a frame's thumbnail is stored: one name per frame and result."""
    return f"thumbs/frame{frame_id}-{sha256[:16]}.png"


def _upload_read(key: str) -> blobs.StoredBytes:
    upload = blobs.blob_read_tagged(key, max_bytes=conf.RESULT_MAX_BYTES)  # FileNotFoundError: nothing was uploaded
    if len(upload.data) > conf.RESULT_MAX_BYTES:
        raise ValueError(f"image is larger than {conf.RESULT_MAX_BYTES} bytes")
    return upload


def _extension(key: str) -> str:
    return key.rsplit(".", 1)[-1].lower() if "." in key.rsplit("/", 1)[-1] else "png"


def result_sanity(*, lease: FrameLease) -> SanityResult:
    """The uploaded image has the leased size (read from its header first: nothing else is decoded), decodes,
    and is not blank; then its bytes are frozen under their SHA-256. Reads storage: call outside locks."""
    noisy = noisy_key(lease.result_key) if _needs_noisy_pass(lease) else ""
    width, height = image_size(lease.manifest)  # the frame, a tile of a still, or a verification crop
    try:
        upload = _upload_read(lease.result_key)
    except FileNotFoundError:
        return SanityResult(False, "no image was uploaded for this lease")
    except ValueError as exc:
        return SanityResult(False, str(exc))
    try:
        noisy_upload = _upload_read(noisy) if noisy else blobs.StoredBytes(b"")
    except FileNotFoundError:
        return SanityResult(False, "a denoised frame needs its pre-denoise pass uploaded too")
    except ValueError as exc:
        return SanityResult(False, str(exc))
    try:
        # Refused from the header when the size is wrong; the job page's thumbnail comes from this one decode, not a
        # second after the report, and an 8-bit PNG's without a float copy of the frame (issue 17).
        render = lease.kind == FrameLease.Kind.RENDER
        summary = result_summary(upload.data, size=(width, height), thumbnail_side=conf.THUMBNAIL_SIDE if render else 0)
        if noisy:
            image_size_check(noisy_upload.data, size=(width, height))
    except WrongSize as exc:
        return SanityResult(False, str(exc))
    except Exception as exc:
        return SanityResult(False, f"upload is not a decodable PNG/EXR image ({type(exc).__name__}: {exc})"[:500])
    # A whole frame of one flat colour is a failed render; a tile or a crop of sky may well be flat.
    if summary.colour_std < 1e-4 and not lease.manifest.get("border"):
        return SanityResult(False, "image is blank (a single flat colour)")
    # Frozen from the uploads just checked: on S3, copies S3 makes of them while they are still those bytes.
    key, sha = blobs.blob_freeze(
        data=upload.data, ext=_extension(lease.result_key), source_key=lease.result_key, source_etag=upload.etag
    )
    frozen_noisy = ""
    if noisy:
        frozen_noisy, _ = blobs.blob_freeze(
            data=noisy_upload.data, ext="exr", source_key=noisy, source_etag=noisy_upload.etag
        )
    return SanityResult(True, sha256=sha, frozen_key=key, noisy_key=frozen_noisy, thumbnail=summary.thumbnail)


def _lease_fail(*, lease: FrameLease, error: str) -> None:
    """Record a failed attempt; requeue the frame, or fail it once FRAME_FAILED_NODES nodes have failed it."""
    FrameLease.objects.filter(pk=lease.pk).update(
        state=FrameLease.State.FAILED, error=error[:2000], finished_at=timezone.now()
    )
    node_status_sync(node_ids=[lease.node_id])
    if lease.kind != FrameLease.Kind.RENDER:
        return
    if _slower_than_calibrated(lease=lease, error=error):
        lifecycle.frame_fail(
            frame_id=lease.frame_id,
            job_id=lease.frame.job_id,
            current=FrameState.LEASED,
            error=(
                f"{pricing.SLOWER_THAN_CALIBRATED}: it needs more compute than its quote paid for; get a new quote "
                f"for it. Node {lease.node_id}: {error}"
            ),
        )
        _after_commit_match()
        return
    block, _ = JobNodeBlock.objects.get_or_create(job_id=lease.frame.job_id, node_id=lease.node_id)
    JobNodeBlock.objects.filter(pk=block.pk).update(failures=F("failures") + 1)
    failed = FrameLease.objects.filter(
        frame_id=lease.frame_id, kind=FrameLease.Kind.RENDER, state=FrameLease.State.FAILED
    )
    if lease.frame.retried_at is not None:  # the artist retried the frame: earlier failures no longer count
        failed = failed.filter(created_at__gte=lease.frame.retried_at)
    errors = [f"node {n}: {e}" for n, e in failed.values_list("node_id", "error")]
    if failed.values("node_id").distinct().count() >= conf.FRAME_FAILED_NODES:
        lifecycle.frame_fail(
            frame_id=lease.frame_id, job_id=lease.frame.job_id, current=FrameState.LEASED, error="\n".join(errors)
        )
        _after_commit_match()
    else:
        lifecycle.frame_requeue(frame_id=lease.frame_id, reason=error)  # its event asks for matching


def _slower_than_calibrated(*, lease: FrameLease, error: str) -> bool:
    """The agent stopped the render at the lease's calibrated budget, and the lease did last that long (a node cannot
    fail a frame at once by merely saying so)."""
    budget = (lease.manifest or {}).get("calibrated_budget_seconds") or 0
    return (
        pricing.SLOWER_THAN_CALIBRATED in error
        and bool(budget)
        and timezone.now() - lease.created_at >= timedelta(seconds=float(budget))
    )


@dataclass(frozen=True)
class ReportOutcome:
    accepted: bool
    message: str
    node_busy: bool = False  # after it: the node holds another lease (the one it took ahead)


def lease_report(
    *,
    node: WorkerNode,
    lease_id: int,
    token: str,
    ok: bool,
    stats: dict | None = None,
    error: str = "",
    match_after: bool = True,
) -> ReportOutcome:
    """An agent's report on its lease. Only the first report of an active, unexpired lease counts.
    `match_after` False: the caller leases the freed node itself (the report view), so no matching round is
    asked for it."""
    lease = _lease_of_node(node=node, lease_id=lease_id, token=token)
    _require_active(lease)
    sanity = result_sanity(lease=lease) if ok else SanityResult(False, error or "agent reported a failure")
    thumbnail = ""
    if sanity.thumbnail:  # stored before the transaction (storage is no place to wait holding row locks)
        thumbnail = thumbnail_key_for(frame_id=lease.frame_id, sha256=sanity.sha256)
        blobs.blob_put_named(key=thumbnail, data=sanity.thumbnail)
    with transaction.atomic():
        if not sanity.ok:
            lease = _lease_of_node(node=node, lease_id=lease_id, token=token, lock=True)
            _require_active(lease)
            _lease_fail(lease=lease, error=sanity.reason if ok else f"render failed: {sanity.reason}")
            return ReportOutcome(False, sanity.reason)
        clean_stats = _clean_stats(stats or {})
        # One conditional UPDATE closes the lease (and locks its row, in the order the reaper takes it): only
        # the first report of a lease still active and unexpired gets here. From here on the result is the
        # frozen copy; the upload keys are dead (the lease is no longer active).
        if not _lease_close_done(
            lease_id=lease.pk, stats=clean_stats, result_key=sanity.frozen_key, noisy_key=sanity.noisy_key
        ):  # a concurrent report, a release, a revoke or the reaper closed it, or it just expired
            _require_active(_lease_of_node(node=node, lease_id=lease_id, token=token))
            raise LeaseRefused("lease is no longer active: the report changes nothing")
        for key in _uploads_of(lease, upload_key=lease.result_key):
            transaction.on_commit(partial(blobs.blob_delete, key))
        # Its event hands a rendered frame to verification, a crop's task checks the crops; both after commit.
        # The frame before the node: the order a cancel takes them (lease, frame, node).
        moved = lease.kind != FrameLease.Kind.RENDER or lifecycle.frame_rendered(
            frame_id=lease.frame_id,
            node_id=node.pk,
            result_key=sanity.frozen_key,
            result_sha256=sanity.sha256,
            render_seconds=clean_stats.get("seconds"),
            thumbnail_key=thumbnail,
        )
        # Busy now means it holds another lease (rule 1): the one it took ahead, so the view leases it nothing.
        node_busy = node_status_sync_one(node_id=node.pk) == WorkerNode.Status.BUSY
        if not moved:  # the frame was cancelled meanwhile; the lease is closed, nothing is paid
            return ReportOutcome(False, "the frame is no longer waiting for this render")
        if lease.kind == FrameLease.Kind.VERIFY:
            lease_id_done = lease.pk
            transaction.on_commit(lambda: _enqueue("verification.crop_reported", lease_id_done))
        if match_after:
            _after_commit_match()
    return ReportOutcome(True, "accepted", node_busy=node_busy)


def _lease_close_done(*, lease_id: int, stats: dict, result_key: str, noisy_key: str) -> bool:
    """ACTIVE -> DONE if the lease is still active and unexpired, with its frozen result. Written out: every
    report runs it, and the ORM compiled it in more Python time than Postgres took to run it (issue 17)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    stats_value = FrameLease._meta.get_field("stats").get_db_prep_save(stats, connection)
    with connection.cursor() as cur:
        cur.execute(
            f"UPDATE {FrameLease._meta.db_table} SET state = %s, stats = %s, finished_at = %s, result_key = %s,"
            " noisy_key = %s WHERE id = %s AND state = %s AND expires_at >= %s",
            [FrameLease.State.DONE, stats_value, now, result_key, noisy_key, lease_id, FrameLease.State.ACTIVE, now],
        )
        return cur.rowcount == 1


def _clean_stats(stats: dict) -> dict:
    out: dict = {}
    for key in ("seconds", "peak_rss_mb"):
        value = stats.get(key)
        if isinstance(value, int | float) and 0 <= value < 1e7:
            out[key] = float(value)
    if isinstance(stats.get("device"), str):
        out["device"] = stats["device"][:40]
    return out


@transaction.atomic
def lease_release(*, node: WorkerNode, lease_id: int, token: str) -> None:
    """The agent gives a lease back (shutting down): the frame is requeued without counting a failure of the
    frame; the node's abandoned leases count against it (conf.ABANDONS_PER_JOB, and its trust: hooks)."""
    lease = _lease_of_node(node=node, lease_id=lease_id, token=token, lock=True)
    _require_active(lease)
    _leases_close(leases=[lease], state=FrameLease.State.RELEASED)
    node_status_sync(node_ids=[node.pk])
    hooks.lease_abandoned(node_id=node.pk, frame_id=lease.frame_id, reason=f"{lease.kind} lease {lease.pk} released")


def node_block_for_job(*, job_id: int, node_id: int) -> None:
    """Keep a node off a job at once (its result was refused by verification or a dispute)."""
    JobNodeBlock.objects.update_or_create(
        job_id=job_id, node_id=node_id, defaults={"failures": conf.NODE_FAILURES_PER_JOB}
    )


def job_node_blocks_clear(*, job_id: int) -> int:
    """The artist lets nodes refused on this job (failed it, or had a result refused) render its frames again.
    Returns how many nodes were let back."""
    cleared, _ = JobNodeBlock.objects.filter(job_id=job_id).delete()
    if cleared:
        _after_commit_match()
    return cleared


@transaction.atomic
def leases_revoke_for_frames(*, frame_ids: list[int], skip_locked: bool = False) -> list[int]:
    """Close active leases of frames being cancelled (jobs.lifecycle.frames_cancel asks, in its transaction);
    a late report then gets a clear refusal, and the agent stops the render on its next heartbeat (the lease
    reads "revoked"). Returns the nodes of the leases closed, whose status the caller syncs once its frames have
    moved: lease, frame, node is the order a report locks them. Leases are locked in id order; `skip_locked`
    passes over those a report holds. Render leases only: a crop lease belongs to a frame already rendered,
    which a cancel leaves payable (one rendered and sampled between the caller's read and this call keeps its
    crop leases)."""
    active = FrameLease.objects.filter(
        frame_id__in=frame_ids, kind=FrameLease.Kind.RENDER, state=FrameLease.State.ACTIVE
    ).order_by("pk")
    locked = _locking(active) if skip_locked else active.select_for_update(of=("self",), no_key=True)
    rows = list(locked.values_list("pk", "node_id"))
    if not rows:
        return []
    FrameLease.objects.filter(pk__in=[pk for pk, _ in rows]).update(
        state=FrameLease.State.REVOKED, finished_at=timezone.now()
    )
    _after_commit_match()
    return sorted({node_id for _, node_id in rows})


def leases_revoke_for_nodes(*, node_ids: list[int]) -> int:
    """Close the active leases of these nodes at once (their provider was banned) and requeue their frames;
    a late report then gets a clear refusal. Returns how many leases were closed."""
    # SKIP LOCKED: a lease that a report or the reaper holds right now is being closed by them (and waiting for
    # it could deadlock with the reaper, which takes the node's trust row after the lease).
    held = list(_locking(FrameLease.objects.filter(node_id__in=node_ids, state=FrameLease.State.ACTIVE).order_by("pk")))
    revoked = _leases_close(
        leases=held, state=FrameLease.State.REVOKED, reason="its node's provider was banned", count_attempt=True
    )
    node_status_sync(node_ids=node_ids)  # banned now, not at the reaper's next round
    return revoked


# --- reaper ---------------------------------------------------------------------------------


def overdue_lease_ids(*, now: datetime) -> list[int]:
    """The active leases past their expiry, read among the active ones (`lease_active_by_node`), not over the
    expiries of every lease the market ever made (the expiry has no index: heartbeats move it on). The state is
    named in the text, so that a prepared statement's generic plan can still read that partial index."""
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT id FROM {FrameLease._meta.db_table} WHERE state = {state_literal(FrameLease.State.ACTIVE)}"
            " AND expires_at < %s ORDER BY id",
            [now],
        )
        return [lease_id for (lease_id,) in cur.fetchall()]


def leases_reap(*, now=None) -> int:
    """Expire overdue leases (requeueing their frames) and mark silent nodes offline."""
    now = now or timezone.now()
    # A beat waiting to be written keeps its node and leases alive: write it before judging them.
    heartbeats.heartbeats_flush()
    reaped = 0
    for lease_id in overdue_lease_ids(now=now):
        with transaction.atomic():
            lease = FrameLease.objects.select_related("frame").filter(pk=lease_id).first()
            if lease is None or not FrameLease.objects.filter(pk=lease_id, state=FrameLease.State.ACTIVE).update(
                state=FrameLease.State.EXPIRED, finished_at=now
            ):
                continue
            if lease.kind == FrameLease.Kind.RENDER:
                lifecycle.frame_requeue(frame_id=lease.frame_id, reason=f"lease expired on node {lease.node_id}")
            node_status_sync(node_ids=[lease.node_id], now=now)
            hooks.lease_abandoned(
                node_id=lease.node_id, frame_id=lease.frame_id, reason=f"{lease.kind} lease {lease.pk} expired"
            )
            log.warning("event=lease_expired", extra=lease_fields(lease))
            reaped += 1
    # Time-based facts (a heartbeat going stale) change no row: sync the nodes they may have made wrong.
    node_status_sync_due(now=now)
    if reaped:
        log.info("event=leases_reaped", extra={"count": reaped})
    return reaped


def node_status_sweep() -> int:
    """Re-derive every node's status, the reaper's round's safety net (`node_status_sync`): the beats waiting to
    be written first, as the reaper does."""
    heartbeats.heartbeats_flush()
    return node_status_sync()


def lease_uploads_clear(*, now=None, batches: int = 1) -> int:
    """Delete what agents uploaded for ended leases once their upload URLs can no longer write:
    `SIGNED_URL_SECONDS` after the lease ended (a presigned S3 PUT cannot be revoked, only expire). A lease that
    ended without a result (a refused report, a failure, expiry, release, revocation) left its upload for good, so
    a provider could fill the market's storage by uploading for every lease and never reporting; a reported lease's
    upload is deleted at its report, and what its agent PUT there after that, here. In the order the leases ended,
    from where the last run stopped (`UploadsClearedTo`), `batches` of UPLOADS_CLEAR_BATCH leases at most; returns
    how many leases it went through. Runs take turns (the cursor's row lock); a delete of nothing is no error."""
    ended_before = (now or timezone.now()) - timedelta(
        seconds=conf.SIGNED_URL_SECONDS + conf.UPLOADS_CLEAR_AFTER_SLACK_SECONDS
    )
    UploadsClearedTo.objects.get_or_create(pk=1)
    cleared = 0
    for _ in range(batches):
        done = _lease_uploads_clear_batch(ended_before=ended_before)
        cleared += done
        if done < conf.UPLOADS_CLEAR_BATCH:
            break
    if cleared:
        log.info("event=lease_uploads_cleared", extra={"count": cleared})
    return cleared


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@transaction.atomic
def _lease_uploads_clear_batch(*, ended_before: datetime) -> int:
    # The storage requests run holding the cursor's row lock: only another run waits on it. A lease counts from the
    # commit that ends it, stamped a moment before; ended_before leaves it SIGNED_URL_SECONDS to commit.
    cursor = UploadsClearedTo.objects.select_for_update().get(pk=1)
    # Written out for its row comparison, which the ORM has not: a range of index lease_ended_in_order, whose
    # condition the statement repeats in its text (`state_literal`).
    table, active = FrameLease._meta.db_table, state_literal(FrameLease.State.ACTIVE)
    leases = list(
        FrameLease.objects.raw(
            f"SELECT id, kind, manifest, upload_key, finished_at FROM {table}"
            f" WHERE state <> {active} AND (finished_at, id) > (%s, %s) AND finished_at < %s"
            " ORDER BY finished_at, id LIMIT %s",
            [
                cursor.finished_at or _EPOCH,
                cursor.lease_id,
                ended_before,
                conf.UPLOADS_CLEAR_BATCH,
            ],
        )
    )
    if not leases:
        return 0
    uploads = [key for lease in leases for key in _uploads_of(lease, upload_key=lease.upload_key)]
    blobs.blobs_delete([key for key in uploads if not key.startswith(blobs.FROZEN_PREFIX)])
    cursor.finished_at, cursor.lease_id = leases[-1].finished_at, leases[-1].pk
    cursor.save(update_fields=["finished_at", "lease_id"])
    return len(leases)


def rendered_frames_resume(*, older_than_s: float = 30.0) -> int:
    """Emit `frame_rendered` again for frames stuck in RENDERED (their message was lost with a broker).

    Its subscribers are idempotent, so a frame whose message was merely slow is handled once all the same.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stuck = list(
        Frame.objects.filter(state=FrameState.RENDERED, rendered_at__lt=cutoff).values_list("pk", flat=True)[:500]
    )
    for frame_id in stuck:
        events.emit(events.FRAME_RENDERED, frame_id=frame_id)
    return len(stuck)


# --- after-commit hooks ---------------------------------------------------------------------


def _enqueue(task_name: str, *args) -> None:
    app.tasks[task_name].delay(*args)  # a registered task honours CELERY_TASK_ALWAYS_EAGER in tests


def _after_commit_match() -> None:
    transaction.on_commit(match_request)


def match_request() -> None:
    """Queue a `dispatch.match` unless one is queued and not yet started: a burst of reports asks for one match,
    not one each (issue 17: a Celery send per report was ~9% of its time)."""
    delay_once("dispatch.match", ttl_s=conf.MATCH_REQUEST_TTL_SECONDS)


def match_run() -> int:
    """The `dispatch.match` task: clear the pending mark first, so a change made from now on asks again, then
    match in rounds until a round leaves nodes or frames over."""
    pending_clear("dispatch.match")
    total = 0
    while made := match_frames(limit=conf.MATCH_ROUND):
        total += made
        if made < conf.MATCH_ROUND:
            break
    return total


# --- after a frame is rendered --------------------------------------------------------------


def frame_result_refuse(*, frame_id: int, result_key: str, reason: str) -> bool:
    """A stored result failed its digest (or size) check on a later read: never use it. A frame still being
    rendered or verified with that result goes back to the queue, unpaid; the event is logged either way.
    (A settled frame keeps its state: readers withhold the image; see README, "What was verified is what is
    delivered".)"""
    log.error("event=result_refused", extra={"frame_id": frame_id, "result_key": result_key, "reason": reason})
    with transaction.atomic():
        frame = Frame.objects.select_for_update(no_key=True).filter(pk=frame_id, result_key=result_key).first()
        if frame is None or frame.state not in (FrameState.RENDERED, FrameState.VERIFYING):
            return False
        # Its event asks for matching.
        lifecycle.frame_result_discard(
            frame_id=frame.pk, current=frame.state, reason=f"stored result refused: {reason}"[:2000]
        )
    return True


def match_frames_soon() -> None:
    """Ask a Celery worker to run matching after the current transaction (if any) commits."""
    _after_commit_match()


def node_greeted(*, node_id: int) -> None:
    """An agent said hello: match it, and let the apps above dispatch prepare for it (`hooks.node_greeted`)."""
    match_frames_soon()
    hooks.node_greeted(node_id=node_id)
