"""Verification of committed results: sampling, random-crop checks, canaries, adaptive trust.

The life of a check (one per render lease, `FrameCheck`):

0. `lease_sampled`: when dispatch grants a render lease, the node's check rate decides, with randomness from
   `secrets`, whether its result will be checked (`FrameLease.sampled`, never sent to the node). After the
   agent's call, `samples_prepare` gives each sampled lease CROPS_PER_CHECK random crops (`LeaseSample`), and
   the platform renders them while the node renders the frame (`references_render`), unless another
   provider's node is idle to verify them later.
1. `frame_verify_or_settle` (the frame_rendered event calls `frame_rendered` once the result is committed and
   sanity-checked; dispatch makes its thumbnail first). Canary
   frames are compared with their known answer at once. Otherwise the lease's draw decides (`result_sampled`:
   drawn again at the report when the node's rate went up since, or when no draw was made); a frame that is
   not sampled is settled (the check records `skipped`). A sampled frame gets its crops and moves to VERIFYING.
2. A crop whose platform reference is rendered already is judged with it (`verification.platform_crop`, no
   render). Any other is leased to an idle node of another provider (`dispatch.services.verify_lease_create`),
   or, when none is idle, rendered by the platform itself (`verification.platform_crop`). Crops go to other
   providers' nodes only after the result is committed: a colluding verifier learns of a check too late.
3. `crop_reported` judges a node's crop with render_kernels. A match passes the crop. A mismatch is not
   believed yet: the platform re-renders the crop and its verdict decides; a node whose crop disagreed
   with the platform's loses trust, so a lying verifier can never cost an honest provider its pay.
4. When every crop is decided: all pass -> `jobs.services.frame_settle` pays the frame once and the node's
   trust grows; any fail -> the frame goes back to the queue (never paid for this render, the artist's
   escrow untouched), the node's trust resets and it gets no more frames of that job.

Every step is idempotent: a crop or a check is decided by a conditional UPDATE under the check's row lock,
and only the caller that made the change applies its consequences.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict, defaultdict
from datetime import datetime, timedelta

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from marketplace import blobs
from marketplace.accounts.services import user_ban
from marketplace.batches import batched
from marketplace.celery import delay_once
from marketplace.dispatch import conf as dispatch_conf
from marketplace.dispatch.manifests import Crop, crop_manifest, expected_size, image_size
from marketplace.dispatch.models import FrameLease
from marketplace.dispatch.services import (
    Delivery,
    frame_result_refuse,
    leases_revoke_for_nodes,
    node_block_for_job,
    scene_deferred,
    verify_lease_create,
)
from marketplace.jobs import events, lifecycle
from marketplace.jobs.models import Frame
from marketplace.jobs.states import JOB_LIVE, FrameState
from marketplace.locks import advisory_xact_lock
from marketplace.nodes import broker
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import online_nodes
from marketplace.nodes.services import node_status_sync
from marketplace.verification import conf, platform, policy
from marketplace.verification.crops import (
    CropResult,
    UnusableReference,
    candidate_of,
    crop_judge,
    crops_choose,
    verifiable,
)
from marketplace.verification.models import CanaryAnswer, CropCheck, FrameCheck, LeaseSample, NodeTrust, TrustEvent
from marketplace.verification.selectors import canary_ready_q
from render_kernels import image_from_bytes
from workers.blend.sandbox import BlendFileError

log = logging.getLogger("verification")


# --- trust ----------------------------------------------------------------------------------


def node_trust_get(*, node_id: int) -> NodeTrust:
    trust, _ = NodeTrust.objects.get_or_create(node_id=node_id)
    return trust


@transaction.atomic
def trust_record(
    *, node_id: int, passed: bool, reason: str, frame_id: int | None = None, kind: str | None = None
) -> NodeTrust:
    """Record a check result. One failure resets the streak; BAN_AFTER_FAILURES failures ban the provider."""
    node_trust_get(node_id=node_id)
    trust = NodeTrust.objects.select_for_update().get(node_id=node_id)
    if passed:
        trust.consecutive_passes += 1
        trust.checks_passed += 1
    else:
        trust.consecutive_passes = 0
        trust.checks_failed += 1
    _rate_set(trust, policy.check_rate(consecutive_passes=trust.consecutive_passes))
    event_kind = kind or (TrustEvent.Kind.PASS if passed else TrustEvent.Kind.FAIL)
    TrustEvent.objects.create(node_id=node_id, kind=event_kind, reason=reason, frame_id=frame_id)
    if not passed and trust.checks_failed >= policy.BAN_AFTER_FAILURES:
        _account_ban(node_id=node_id, frame_id=frame_id, reason=f"{trust.checks_failed} failed checks")
    trust.save()
    node_status_sync(node_ids=[node_id])  # a ban shows at once (the node's status is derived, issue 12)
    return trust


def _account_ban(*, node_id: int, frame_id: int | None, reason: str) -> None:
    """A ban is the provider's (policy): ban its account, close its nodes' leases, take their broker access.
    Once: a provider already banned is left as it is."""
    owner_id = WorkerNode.objects.filter(pk=node_id).values_list("owner_id", flat=True).get()
    if not user_ban(user_id=owner_id):
        return
    TrustEvent.objects.create(node_id=node_id, kind=TrustEvent.Kind.BAN, reason=reason, frame_id=frame_id)
    node_ids = list(WorkerNode.objects.filter(owner_id=owner_id).values_list("pk", flat=True))
    leases_revoke_for_nodes(node_ids=node_ids)  # its frames go back to the queue now, not at lease expiry
    broker.nodes_broker_revoke_on_commit(node_ids=node_ids)


@transaction.atomic
def trust_lease_abandoned(*, node_id: int, frame_id: int, reason: str) -> NodeTrust:
    """A lease of this node expired or was released: the node loses ABANDON_PASSES_LOST of its streak (its
    check rate goes back up one step). Not a failed check (policy: a crash is not a cheat)."""
    node_trust_get(node_id=node_id)
    trust = NodeTrust.objects.select_for_update().get(node_id=node_id)
    trust.consecutive_passes = policy.after_abandon(consecutive_passes=trust.consecutive_passes)
    _rate_set(trust, policy.check_rate(consecutive_passes=trust.consecutive_passes))
    trust.save(update_fields=["consecutive_passes", "check_rate", "raised_at", "updated_at"])
    TrustEvent.objects.create(node_id=node_id, kind=TrustEvent.Kind.ABANDONED, reason=reason[:2000], frame_id=frame_id)
    return trust


def _rate_set(trust: NodeTrust, rate: float) -> None:
    if rate > trust.check_rate:
        trust.raised_at = timezone.now()  # leases drawn at the old rate are drawn again (`result_sampled`)
    trust.check_rate = rate


def _chance(rate: float) -> bool:
    """True with probability `rate`, from the operating system's CSPRNG (nodes cannot predict it)."""
    return secrets.randbelow(1_000_000) < round(rate * 1_000_000)


# --- step 0: sampling when a lease is granted -----------------------------------------------


def lease_sampled(*, node: WorkerNode, frame: Frame, manifest: dict) -> bool | None:
    """Whether the result of a render lease of `frame` to `node` will be checked, drawn at the node's check rate
    (dispatch's hook, inside the transaction that stores the lease, with the node's trust loaded). None when
    no draw is made now: draws at the lease switched off, a canary (checked against its answer), or a frame
    too small to compare (the report says so)."""
    if not conf.SAMPLE_AT_LEASE or frame.job.is_canary:
        return None
    width, height = image_size(manifest)
    if not verifiable(width=width, height=height):
        return None
    try:
        rate = node.trust.check_rate  # matching loads it with the node
    except NodeTrust.DoesNotExist:
        rate = 1.0
    return _chance(rate)


def leases_granted(*, leases: list[FrameLease]) -> None:
    """Dispatch stored a round of render leases (its hook, inside the transaction). Whatever was drawn, the same
    thing: after commit, `samples_prepare` is asked for, once for a burst of rounds. Choosing a sampled lease's
    crops here, in the agent's call, made that call 1.5 ms slower than an unsampled one (bench_agent_api at check
    rate 0.5): a node timing its calls could have told which of its frames are checked."""
    if conf.SAMPLE_AT_LEASE and leases:
        transaction.on_commit(_samples_prepare_soon)


def _samples_prepare_soon() -> None:
    delay_once("verification.samples_prepare", ttl_s=events.COALESCED_TTL_SECONDS)


def samples_prepare(*, limit: int = conf.SAMPLES_BATCH) -> int:
    """Choose the crops of active leases drawn for a check that have none yet, and ask a heavy worker to render
    them while the nodes render (`references_render`). Returns how many it prepared. Safe to run again and
    concurrently: a lease prepared twice keeps its first crops (a second references task renders only what is
    missing); a lease reported before it was prepared gets its crops at the report, and is left alone here."""
    leases = list(
        FrameLease.objects.filter(state=FrameLease.State.ACTIVE, sampled=True, sample__isnull=True).order_by("pk")[
            :limit
        ]
    )
    if not leases:
        return 0
    LeaseSample.objects.bulk_create(
        (LeaseSample(render_lease=lease, crops=[crop.as_dict() for crop in _crops_of(lease)]) for lease in leases),
        ignore_conflicts=True,
    )
    if conf.REFERENCES_AHEAD:
        for lease in leases:
            _enqueue("verification.references_render", lease.pk)
    return len(leases)


def _crops_of(lease: FrameLease) -> list[Crop]:
    width, height = image_size(lease.manifest)  # a tile's crops are chosen inside the tile
    return crops_choose(width=width, height=height)


def result_sampled(*, lease: FrameLease, rate: float, raised_at: datetime | None) -> bool:
    """Whether the result of this render lease is checked: the draw made when it was granted, unless the node's
    check rate went up since (`NodeTrust.raised_at`: a failed check, an abandoned lease), when an unsampled
    lease is drawn again at the new rate. A lease granted without a draw is drawn now."""
    if lease.sampled is None or (not lease.sampled and raised_at is not None and raised_at >= lease.created_at):
        return _chance(rate)
    return lease.sampled


def sample_crops(*, leases: list[FrameLease]) -> dict[int, list[dict]]:
    """The crops of these render leases' checks, by lease id: those chosen at the lease, or chosen now."""
    chosen = dict(
        LeaseSample.objects.filter(render_lease__in=[lease for lease in leases if lease.sampled]).values_list(
            "render_lease_id", "crops"
        )
    )
    return {lease.pk: chosen.get(lease.pk) or [c.as_dict() for c in _crops_of(lease)] for lease in leases}


def references_render(*, lease_id: int) -> int:
    """The platform renders the reference crops of a sampled lease while its node renders the frame, so that the
    check is decided when the result arrives. Nothing when another provider's node is idle to verify the crops
    after the report (cheaper for the platform), or once the lease ended without a result or its check was
    decided. Returns how many it rendered; safe to run again (it renders only the missing ones)."""
    sample = (
        LeaseSample.objects.select_related("render_lease__frame__job__scene", "render_lease__node")
        .defer(*scene_deferred("render_lease__frame__job__scene"))
        .filter(render_lease_id=lease_id)
        .first()
    )
    if sample is None:
        return 0
    lease = sample.render_lease
    job = lease.frame.job
    verifiers = policy.verifiers_for(
        job_id=job.pk,
        blender_series=job.blender_series,
        device=lease.manifest.get("device") or "CPU",
        candidate_owner_id=lease.node.owner_id,
    )
    if verifiers.exists():
        return 0
    rendered = 0
    for index, crop in enumerate(sample.crops):
        if not _reference_wanted(lease_id=lease_id, index=index):
            continue
        try:
            key = _platform_render_frozen(lease=lease, scene=job.scene, region=Crop.from_dict(crop))
        except BlendFileError:
            return rendered  # the crop's own platform render after the report fails it, with the reason
        with transaction.atomic():
            locked = LeaseSample.objects.select_for_update().get(pk=lease_id)
            references = locked.references or [""] * len(locked.crops)
            references[index] = key
            LeaseSample.objects.filter(pk=lease_id).update(references=references)
        rendered += 1
    return rendered


def _reference_wanted(*, lease_id: int, index: int) -> bool:
    """Is the `index`-th reference of this lease's sample still to be rendered, and of use?"""
    sample = LeaseSample.objects.select_related("render_lease").get(pk=lease_id)
    if index < len(sample.references) and sample.references[index]:
        return False
    if sample.render_lease.state not in (FrameLease.State.ACTIVE, FrameLease.State.DONE):
        return False  # expired, released, revoked or failed: no result will be checked
    return not FrameCheck.objects.filter(render_lease_id=lease_id).exclude(state=FrameCheck.State.PENDING).exists()


def _reference_of(crop: CropCheck) -> str:
    """The platform's reference render of this crop made ahead (`references_render`), or "" (also, with no read,
    for a lease that was not drawn for a check when granted)."""
    if not crop.frame_check.render_lease.sampled:
        return ""
    sample = LeaseSample.objects.filter(render_lease_id=crop.frame_check.render_lease_id).first()
    if sample is None or crop.crop not in sample.crops:
        return ""
    index = sample.crops.index(crop.crop)
    return sample.references[index] if index < len(sample.references) else ""


# --- images ---------------------------------------------------------------------------------


def _image(key: str, size: tuple[int, int] | None = None):
    """A stored image, checked against the digest it was frozen under and, from its header, its size."""
    return image_from_bytes(_bytes_checked(key), size=size)


def _bytes_checked(key: str) -> bytes:
    return blobs.blob_read_checked(key, max_bytes=dispatch_conf.RESULT_MAX_BYTES)


_candidates: OrderedDict[tuple[str, tuple[int, int] | None], np.ndarray] = OrderedDict()


def _candidate_image(key: str, size: tuple[int, int] | None):
    """A check's candidate image (`_image`), decoded once in this worker process for all the check's crops: at
    1920x1080 a PNG takes ~40 ms of CPU to decode, judging a crop of it ~5 ms. Its bytes are still read and
    checked against their digest for every crop (a result swapped in storage during its check is refused), and
    a decoded copy is used only for a key that names that digest. The most recent ones are kept, up to
    CANDIDATE_CACHE_BYTES; read-only, since every crop judges the same array."""
    data = _bytes_checked(key)
    if not blobs.digest_of_key(key):
        return image_from_bytes(data, size=size)
    cached = _candidates.get((key, size))
    if cached is not None:
        _candidates.move_to_end((key, size))
        return cached
    image = image_from_bytes(data, size=size)
    image.flags.writeable = False
    _candidates[(key, size)] = image
    while len(_candidates) > 1 and sum(a.nbytes for a in _candidates.values()) > conf.CANDIDATE_CACHE_BYTES:
        _candidates.popitem(last=False)
    return image


def _judge(check: FrameCheck, crop: Crop, reference_key: str, *, verifier_device: str) -> CropResult:
    """Compare the candidate's region with a trusted crop rendered on `verifier_device`'s Cycles backend.
    UnusableReference if the crop is unreadable; blobs.DigestMismatch if the candidate is no longer what was
    frozen at its report."""
    try:
        reference = _image(reference_key, (crop.w, crop.h))
    except (OSError, ValueError, blobs.DigestMismatch) as exc:
        raise UnusableReference(f"cannot read the re-rendered crop: {exc}") from exc
    lease = check.render_lease
    key = candidate_of(lease)
    try:
        candidate = _candidate_image(key, expected_size(lease.manifest))
    except (OSError, ValueError) as exc:
        what = "the pre-denoise pass" if key != lease.result_key else "the frame"
        return CropResult(False, reasons=[f"{what} cannot be read: {type(exc).__name__}: {exc}"[:500]])
    return crop_judge(
        candidate=candidate,
        reference=reference,
        crop=crop,
        verifier_device=verifier_device,
        candidate_device=check.render_lease.manifest.get("device") or "CPU",
    )


def _check_refuse_result(*, check: FrameCheck, reason: str) -> None:
    """The candidate failed its digest check: the check ends without a verdict on the node (it cannot write
    frozen results), nothing is paid, and the frame goes back to the queue. Logged as an event."""
    with transaction.atomic():
        locked = FrameCheck.objects.select_for_update().get(pk=check.pk)
        if locked.state != FrameCheck.State.PENDING:
            return
        now = timezone.now()
        message = f"the stored result was refused: {reason}"[:2000]
        CropCheck.objects.filter(frame_check=locked, state=CropCheck.State.PENDING).update(
            state=CropCheck.State.FAILED, reason=message, decided_at=now
        )
        FrameCheck.objects.filter(pk=locked.pk).update(state=FrameCheck.State.FAILED, reason=message, decided_at=now)
        frame_result_refuse(frame_id=locked.frame_id, result_key=check.render_lease.result_key, reason=reason)


# --- step 1: sample, choose crops -----------------------------------------------------------


def _render_lease_of(frame: Frame) -> FrameLease | None:
    return (
        FrameLease.objects.filter(
            frame=frame, kind=FrameLease.Kind.RENDER, state=FrameLease.State.DONE, result_key=frame.result_key
        )
        .select_related("node")
        .order_by("-id")
        .first()
    )


def frame_verify_or_settle(*, frame_id: int) -> FrameCheck | None:
    """Entry point after a frame's result is committed: check it (sampled, canary) or settle it.

    Safe to call again at any point: it resumes whatever the previous call left undone.
    """
    frame = Frame.objects.select_related("job").filter(pk=frame_id).first()
    if frame is None or frame.state not in (FrameState.RENDERED, FrameState.VERIFYING):
        return None
    lease = _render_lease_of(frame)
    if lease is None:
        log.error(
            "event=verify_no_lease",
            extra={"frame_id": frame.pk, "job_id": frame.job_id, "result_key": frame.result_key},
        )
        return None
    check = FrameCheck.objects.filter(render_lease=lease).first()
    if check is None and frame.job.is_canary:
        return _canary_check(frame=frame, lease=lease)
    if check is None:
        check = _check_open(frame_id=frame.pk, lease=lease)
        if check is None:
            return None
    _check_advance(check)
    return check


def _check_open(*, frame_id: int, lease: FrameLease) -> FrameCheck | None:
    """Sample the result and, if checked, choose its crops and move the frame to VERIFYING. One transaction."""
    with transaction.atomic():
        frame = Frame.objects.select_for_update(no_key=True).get(pk=frame_id)
        existing = FrameCheck.objects.filter(render_lease=lease).first()
        if existing is not None or frame.state != FrameState.RENDERED:
            return existing
        trust = node_trust_get(node_id=lease.node_id)
        rate = trust.check_rate
        fields = {"frame": frame, "render_lease": lease, "node_id": lease.node_id, "check_rate": rate}
        skip = skip_reason(lease=lease, rate=rate, raised_at=trust.raised_at)
        if skip:
            return FrameCheck.objects.create(
                **fields,
                kind=FrameCheck.Kind.SKIPPED,
                state=FrameCheck.State.SKIPPED,
                decided_at=timezone.now(),
                reason=skip,
            )
        check = FrameCheck.objects.create(**fields, kind=FrameCheck.Kind.CROPS)
        crops = sample_crops(leases=[lease])[lease.pk]
        CropCheck.objects.bulk_create(CropCheck(frame_check=check, crop=crop) for crop in crops)
        lifecycle.frame_verifying(frame_id=frame.pk)
        return check


def skip_reason(*, lease: FrameLease, rate: float, raised_at: datetime | None) -> str:
    """Why this render lease's result is not checked ("" when it is)."""
    width, height = image_size(lease.manifest)  # a tile's crops are chosen inside the tile
    if not verifiable(width=width, height=height):
        return f"{width}x{height} is too small to compare"
    if not result_sampled(lease=lease, rate=rate, raised_at=raised_at):
        return f"not sampled (check rate {rate:.0%})"
    return ""


def _check_advance(check: FrameCheck) -> None:
    """Do what the check's state still asks for: settle a skipped one, lease undispatched crops, finish."""
    if check.state == FrameCheck.State.SKIPPED:
        _settle(check)
        return
    for crop_id in check.crops.filter(dispatched_at=None).values_list("pk", flat=True):
        _crop_dispatch(crop_check_id=crop_id)
    _check_finish(check_id=check.pk)


# --- step 2: who re-renders a crop ----------------------------------------------------------


def crop_lease_create(*, frame_id: int, crop: dict, exclude_owner_id: int, device: str = "CPU") -> Delivery | None:
    """Lease a crop of a rendered frame to a node that may verify it (`policy.verifiers_for`: another provider's,
    on the frame's Cycles backend `device` and Blender series); dispatch sends it. None if none is available."""
    job_id, series = Frame.objects.filter(pk=frame_id).values_list("job_id", "job__blender_series").get()
    verifiers = policy.verifiers_for(
        job_id=job_id, blender_series=series, device=device, candidate_owner_id=exclude_owner_id
    )
    return verify_lease_create(frame_id=frame_id, crop=crop, verifiers=verifiers)


@transaction.atomic
def _crop_dispatch(*, crop_check_id: int) -> None:
    """FrameLease the crop to an idle node of another provider, or hand it to the platform verifier."""
    crop = (
        CropCheck.objects.select_for_update(of=("self",))
        .select_related("frame_check__node", "frame_check__render_lease")
        .get(pk=crop_check_id)
    )
    if crop.dispatched_at is not None or crop.state != CropCheck.State.PENDING:
        return
    check = crop.frame_check
    if _reference_of(crop):
        _crop_to_platform(crop)  # rendered while the node rendered: judged with it, no render
        return
    # A verifier on the candidate's own Cycles backend, so the strict same-backend rule applies; none idle:
    # the platform (CPU), judged by the cross-backend rule.
    delivery = crop_lease_create(
        frame_id=check.frame_id,
        crop=crop.crop,
        exclude_owner_id=check.node.owner_id,
        device=check.render_lease.manifest.get("device") or "CPU",
    )
    if delivery is None:
        _crop_to_platform(crop)
        return
    CropCheck.objects.filter(pk=crop.pk).update(
        verifier=CropCheck.Verifier.NODE, verify_lease_id=delivery.lease_id, dispatched_at=timezone.now()
    )


def _crop_to_platform(crop: CropCheck, **fields) -> None:
    """The platform re-renders this crop (after commit). The caller holds the crop's row lock."""
    CropCheck.objects.filter(pk=crop.pk).update(
        verifier=CropCheck.Verifier.PLATFORM, dispatched_at=timezone.now(), **fields
    )
    crop_id = crop.pk
    transaction.on_commit(lambda: _enqueue("verification.platform_crop", crop_id))


def _enqueue(task_name: str, *args) -> None:
    from marketplace.celery import app

    app.tasks[task_name].delay(*args)  # a registered task honours CELERY_TASK_ALWAYS_EAGER in tests


# --- step 3: judging crops ------------------------------------------------------------------


def crop_reported(*, lease_id: int) -> None:
    """A node reported its verify lease: judge its crop. A mismatch goes to the platform to break the tie."""
    crop = (
        CropCheck.objects.select_related("frame_check__render_lease", "verify_lease")
        .filter(verify_lease_id=lease_id)
        .first()
    )
    if crop is None or crop.state != CropCheck.State.PENDING or crop.verifier != CropCheck.Verifier.NODE:
        return  # unknown lease, already judged, or already with the platform
    lease = crop.verify_lease
    if lease is None or lease.state != FrameLease.State.DONE:
        return
    region = Crop.from_dict(crop.crop)
    wanted = crop_manifest(crop.frame_check.render_lease.manifest, region)
    if any(lease.manifest.get(k) != wanted[k] for k in ("file_format", "use_denoising", "border")):
        # The lease asked for another format than the comparison needs: not the verifier's fault.
        _crop_escalate(
            crop_check_id=crop.pk,
            node_verdict={
                "verifier": lease.node_id,
                "error": (
                    f"the verify lease asked for {lease.manifest.get('file_format')} with denoising "
                    f"{lease.manifest.get('use_denoising')}; the comparison needs {wanted['file_format']} without"
                ),
            },
        )
        return
    try:
        result = _judge(
            crop.frame_check, region, lease.result_key, verifier_device=lease.manifest.get("device") or "CPU"
        )
    except blobs.DigestMismatch as exc:
        _check_refuse_result(check=crop.frame_check, reason=str(exc))
        return
    except UnusableReference as exc:
        _crop_escalate(crop_check_id=crop.pk, node_verdict={"verifier": lease.node_id, "error": str(exc)})
        return
    if result.passed and _chance(policy.audit_share()):
        # Audited (policy.AUDIT_SHARE): the platform re-renders it too; if the candidate then fails, the node
        # that vouched for it is failed like the cheat.
        _crop_escalate(
            crop_check_id=crop.pk,
            node_verdict={"agreed": lease.node_id, "metrics": result.metrics, "reference_key": lease.result_key},
        )
    elif result.passed:
        _crop_decide(
            crop_check_id=crop.pk, result=result, reference_key=lease.result_key, verifier=CropCheck.Verifier.NODE
        )
    else:  # "node": a disagreement that costs the verifier trust if the platform sides with the candidate
        _crop_escalate(
            crop_check_id=crop.pk,
            node_verdict={"node": lease.node_id, "metrics": result.metrics, "reasons": result.reasons},
        )


@transaction.atomic
def _crop_escalate(*, crop_check_id: int, node_verdict: dict) -> None:
    crop = CropCheck.objects.select_for_update().get(pk=crop_check_id)
    if crop.state == CropCheck.State.PENDING and crop.verifier == CropCheck.Verifier.NODE:
        _crop_to_platform(crop, node_verdict=node_verdict)


def platform_prewarm(*, frame_ids: list[int]) -> bool:
    """Frames were queued (a job accepted, or frames sent back): the platform verifier loads their job's scene
    now, so the job's first platform crop does not start Blender and load the scene in its own path. A job
    whose scene this worker cannot have loaded yet is the common case; a requeue of a running job's frame finds
    it loaded and does nothing. True when it loaded the scene."""
    if not conf.PLATFORM_PREWARM or not frame_ids:
        return False
    frame = (
        Frame.objects.select_related("job__scene")
        .defer(*scene_deferred("job__scene"))
        .filter(pk=frame_ids[0], job__state__in=JOB_LIVE, job__is_canary=False)
        .first()
    )
    if frame is None or frame.job.scene is None:
        return False
    return platform.prewarm(scene=platform.stored_scene(frame.job.scene), series=frame.job.blender_series)


def platform_crop(*, crop_check_id: int) -> None:
    """Render the crop on the platform and judge the candidate with it (also breaks node/candidate ties)."""
    crop = (
        CropCheck.objects.select_related("frame_check__render_lease", "frame_check__frame__job__scene")
        .defer(*scene_deferred("frame_check__frame__job__scene"))
        .filter(pk=crop_check_id)
        .first()
    )
    if crop is None or crop.state != CropCheck.State.PENDING or crop.verifier != CropCheck.Verifier.PLATFORM:
        return
    check = crop.frame_check
    region = Crop.from_dict(crop.crop)
    key = _reference_of(crop)
    if not key:
        key = _platform_reference(check=check, crop=crop, region=region)
        if not key:
            return
    try:
        # The platform renders on CPU (platform.render): a GPU candidate is judged by the cross-backend rule.
        result = _judge(check, region, key, verifier_device="CPU")  # an unreadable platform render is a bug: retry
    except blobs.DigestMismatch as exc:
        _check_refuse_result(check=check, reason=str(exc))
        return
    _crop_decide(crop_check_id=crop.pk, result=result, reference_key=key, verifier=CropCheck.Verifier.PLATFORM)


def _platform_reference(*, check: FrameCheck, crop: CropCheck, region: Crop) -> str:
    """Render this crop on the platform and freeze it; "" when the platform's Blender refuses the scene (the crop
    is failed then: the node cannot have rendered it honestly)."""
    try:
        return _platform_render_frozen(lease=check.render_lease, scene=check.frame.job.scene, region=region)
    except BlendFileError as exc:
        # The same Blender refuses the scene or the manifest, so the node cannot have rendered it honestly.
        # (Limits and crashes are SandboxErrors instead: the task retries them.)
        result = CropResult(False, reasons=[f"the platform's Blender refuses to render this: {exc}"[:500]])
        _crop_decide(crop_check_id=crop.pk, result=result, reference_key="", verifier=CropCheck.Verifier.PLATFORM)
        return ""


def _platform_render_frozen(*, lease: FrameLease, scene, region: Crop) -> str:
    """The platform's render of `region` of this render lease's frame, frozen; its key. BlendFileError when the
    platform's Blender refuses the scene or the manifest."""
    manifest = crop_manifest(lease.manifest, region)
    data = platform.render(scene=platform.stored_scene(scene), manifest=manifest)
    ext = "exr" if manifest["file_format"] == "OPEN_EXR" else "png"
    key, _ = blobs.blob_freeze(data=data, ext=ext)  # evidence later reads it checked against its digest
    return key


def _crop_decide(*, crop_check_id: int, result: CropResult, reference_key: str, verifier: str) -> None:
    """Record a crop's verdict once; finish the check when it was the last one."""
    with transaction.atomic():
        crop = CropCheck.objects.select_related("frame_check").get(pk=crop_check_id)
        FrameCheck.objects.select_for_update().get(pk=crop.frame_check_id)  # serialises the crops of one check
        state = CropCheck.State.PASSED if result.passed else CropCheck.State.FAILED
        if not CropCheck.objects.filter(pk=crop.pk, state=CropCheck.State.PENDING, verifier=verifier).update(
            state=state,
            metrics=result.metrics,
            reason=result.summary[:2000],
            reference_key=reference_key,
            decided_at=timezone.now(),
        ):
            return  # judged already (a duplicate message or a retried task)
        disagreed = crop.node_verdict.get("node")
        if disagreed and result.passed:
            trust_record(
                node_id=disagreed,
                passed=False,
                frame_id=crop.frame_check.frame_id,
                reason=f"its re-render of crop {crop.crop} of frame {crop.frame_check.frame_id} disagreed "
                "with the platform's, which matched the frame",
            )
        agreed = crop.node_verdict.get("agreed")
        if agreed and not result.passed:
            trust_record(
                node_id=agreed,
                passed=False,
                frame_id=crop.frame_check.frame_id,
                reason=f"its re-render of crop {crop.crop} of frame {crop.frame_check.frame_id} matched "
                "a result that the platform's re-render refused (audit)",
            )
        _check_finish(check_id=crop.frame_check_id)


# --- step 4: the decision -------------------------------------------------------------------


def _job_services():
    # jobs.selectors imports disputes, which imports this module (debt listed in .importlinter): jobs.services is
    # imported when first used until that is gone.
    from marketplace.jobs import services

    return services


def _settle(check: FrameCheck) -> None:
    """Pay the checked node for the frame (jobs.services.frame_settle: the ledger post and the move)."""
    _job_services().frame_settle(frame_id=check.frame_id, node_id=check.node_id)


def _check_finish(*, check_id: int) -> None:
    """When every crop is judged, decide the check once and apply it (settle, or requeue and distrust)."""
    with transaction.atomic():
        check = FrameCheck.objects.select_for_update(of=("self",)).select_related("frame").get(pk=check_id)
        crops = list(check.crops.order_by("pk"))
        if check.state != FrameCheck.State.PENDING or any(c.state == CropCheck.State.PENDING for c in crops):
            return
        failed = [c for c in crops if c.state == CropCheck.State.FAILED]
        if failed:
            reason = " | ".join(f"crop {c.crop}: {c.reason}" for c in failed)[:4000]
            FrameCheck.objects.filter(pk=check.pk).update(
                state=FrameCheck.State.FAILED, reason=reason, decided_at=timezone.now()
            )
            log.warning(
                "event=check_failed", extra={"frame_id": check.frame_id, "node_id": check.node_id, "reason": reason}
            )
            _frame_reject(check=check, reason=reason)
            return
        reason = f"{len(crops)} random crops matched their re-renders"
        FrameCheck.objects.filter(pk=check.pk).update(
            state=FrameCheck.State.PASSED, reason=reason, decided_at=timezone.now()
        )
        log.info(
            "event=check_passed", extra={"frame_id": check.frame_id, "node_id": check.node_id, "crops": len(crops)}
        )
        _settle(check)
        trust_record(node_id=check.node_id, passed=True, reason=reason, frame_id=check.frame_id)


def _frame_reject(*, check: FrameCheck, reason: str) -> None:
    """The result is wrong: nobody is paid for it and the frame is rendered again, by another node."""
    trust_record(node_id=check.node_id, passed=False, reason=reason, frame_id=check.frame_id)
    frame = check.frame
    node_block_for_job(job_id=frame.job_id, node_id=check.node_id)
    failed_nodes = (
        FrameCheck.objects.filter(frame_id=frame.pk, state=FrameCheck.State.FAILED).values("node_id").distinct().count()
    )
    message = f"verification failed on node {check.node_id}: {reason}"
    if failed_nodes >= policy.FRAME_FAILED_CHECKS:
        error = (
            f"failed verification on {failed_nodes} different nodes; the scene may not render reproducibly. "
            f"Last: {message}"
        )
        # Its event asks jobs to finish the job if this was its last open frame.
        lifecycle.frame_fail(frame_id=frame.pk, job_id=frame.job_id, current=FrameState.VERIFYING, error=error)
        return
    # Its event asks for matching; if the job was cancelled meanwhile, the frame ends there instead.
    lifecycle.frame_result_discard(frame_id=frame.pk, current=FrameState.VERIFYING, reason=message)
    job_id = frame.job_id
    transaction.on_commit(lambda: _job_services().job_finish_if_complete(job_id=job_id))


# --- canaries -------------------------------------------------------------------------------


def _canary_check(*, frame: Frame, lease: FrameLease) -> FrameCheck | None:
    """Compare a canary frame with its known answer over the whole frame; then offer the canary again."""
    answer = CanaryAnswer.objects.get(frame=frame)  # canary_frame_for leases only canaries with answers
    reference = _image(answer.answer_key)
    whole = Crop(0, 0, lease.manifest["resolution_x"], lease.manifest["resolution_y"])
    try:
        # The answer was rendered by the platform on CPU: a GPU node is judged by the cross-backend rule.
        result = crop_judge(
            candidate=_image(lease.result_key, (whole.w, whole.h)),
            reference=reference,
            crop=whole,
            candidate_device=lease.manifest.get("device") or "CPU",
            verifier_device="CPU",
        )
    except blobs.DigestMismatch as exc:
        frame_result_refuse(frame_id=frame.pk, result_key=lease.result_key, reason=str(exc))
        return None
    except (OSError, ValueError) as exc:
        result = CropResult(False, reasons=[f"the frame cannot be compared: {exc}"[:500]])
    state = FrameCheck.State.PASSED if result.passed else FrameCheck.State.FAILED
    with transaction.atomic():
        Frame.objects.select_for_update(no_key=True).get(pk=frame.pk)
        if FrameCheck.objects.filter(render_lease=lease).exists():
            return None
        now = timezone.now()
        check = FrameCheck.objects.create(
            frame=frame,
            render_lease=lease,
            node_id=lease.node_id,
            kind=FrameCheck.Kind.CANARY,
            state=state,
            check_rate=node_trust_get(node_id=lease.node_id).check_rate,
            decided_at=now,
            # Worded like any check: the node's owner reads it on the node page and must not learn it was a canary.
            reason=(
                "the frame matched its re-render"
                if result.passed
                else f"the frame differs from its re-render: {result.summary}"
            ),
        )
        CropCheck.objects.create(
            frame_check=check,
            crop=whole.as_dict(),
            state=state,
            decided_at=now,
            dispatched_at=now,
            verifier=CropCheck.Verifier.PLATFORM,
            metrics=result.metrics,
            reference_key=answer.answer_key,
            reason=result.summary[:2000],
        )
        trust_record(
            node_id=lease.node_id,
            passed=result.passed,
            frame_id=frame.pk,
            reason=check.reason,
            kind=None if result.passed else TrustEvent.Kind.CANARY_FAIL,
        )
        # The canary goes back to the pool for other providers' nodes; nobody is paid (price 0). Its offers were
        # void from its lease on (`NodeTrust.canary_updated_at`): they are renewed, never to this provider's nodes.
        lifecycle.frame_result_discard(frame_id=frame.pk, current=FrameState.RENDERED, reason=None)
        canary_offers_renew_soon()
    return check


def canary_frame_for(*, node) -> Frame | None:
    """A canary frame to lease to `node` instead of its next artist frame, or None (most of the time).

    Called by dispatch's matching inside its transaction, with the node locked and its reads loaded (`NODE_READS`:
    its trust and the canary offered to it). The rate follows the node's trust (check_rate * CANARY_SHARE). The
    canary is the one chosen ahead for this node (`canary_offers_renew`), so a hit reads nothing more than a miss:
    a node timing its calls cannot tell the canaries apart. The caller claims the frame with its conditional
    QUEUED -> LEASED update, so two matchers can never lease the same canary.
    """
    try:
        trust = node.trust
    except NodeTrust.DoesNotExist:
        trust = None
    rate = policy.canary_rate(check_rate=trust.check_rate if trust else 1.0)
    if not _chance(rate) or trust is None or trust.canary is None:
        return None
    canary = trust.canary
    unleased = canary.state == FrameState.QUEUED and canary.updated_at == trust.canary_updated_at  # since offered
    fits = canary.job.state in JOB_LIVE and canary.job.blender_series in node.series
    return canary if unleased and fits else None


# What matching reads with each node it locks (dispatch.hooks.node_reads): the check rate and the canary offer.
NODE_READS = "trust__canary__job__scene"
_OFFERS_LOCK = "verification.canary_offers"
# Ids a renewal names in one statement: session 17's renewal failed at 100,000 nodes (bench_canaries), its one
# `bulk_update` of every offer passing Postgres' 65,535 parameters.
_IDS_PER_STATEMENT = 10_000
_random = secrets.SystemRandom()


def canary_offers_renew(*, now=None, node_id: int | None = None) -> int:
    """Choose ahead the canary each online node gets when its canary draw hits (`NodeTrust.canary`), for the nodes
    with none or one no longer queued. Each offer is a queued canary frame with an answer, of a live job of a
    series the node takes, of a scene its provider has never leased and offers no other of its nodes: a provider
    never gets the same canary scene twice on any of its nodes. Returns how many offers it made or withdrew.

    Scene by scene (a pool has few): the database finds the online nodes without an offer whose provider has
    neither leased nor been offered that scene, and one of each such provider's nodes gets it. So a run reads
    rows only for the offers it makes, not every node left without one (the providers that have seen every scene:
    most nodes of a farm whose canary pool is small).

    A periodic task runs it, and a canary job opening, a canary check ending ask for it; a node saying hello asks
    for its own (`node_id`: only that node's offer is renewed). One run at a time (a lock)."""
    with transaction.atomic():
        advisory_xact_lock(_OFFERS_LOCK)  # two runs would offer one scene to two nodes of a provider
        online, trusts, owners = online_nodes(now), NodeTrust.objects.all(), None
        if node_id is None:
            # The rows missing are found before asking which of those nodes are online: that question, asked of
            # every node, cost most of a run.
            missing = list(WorkerNode.objects.filter(trust__isnull=True).values_list("pk", flat=True))
        else:  # one node's renewal: that node, and the scenes of its own provider only
            online, trusts, missing = online.filter(pk=node_id), trusts.filter(node_id=node_id), [node_id]
            owners = online.values("owner_id")
        for some in batched(missing, _IDS_PER_STATEMENT):  # a node without its row yet needs an offer most
            new = online.filter(pk__in=some, trust__isnull=True)
            NodeTrust.objects.bulk_create(
                (NodeTrust(node_id=pk) for pk in new.values_list("pk", flat=True)),
                ignore_conflicts=True,
                batch_size=max(_IDS_PER_STATEMENT // 8, 1),  # Postgres takes at most 65,535 parameters a statement
            )
        # An offer that can no longer be handed out is withdrawn; its node may get another below.
        changed = (
            trusts.filter(canary__isnull=False).exclude(canary_ready_q()).update(canary=None, canary_updated_at=None)
        )
        pool: dict[tuple[int, str], list[tuple[int, datetime]]] = defaultdict(list)
        for frame_id, scene_id, series, version in Frame.objects.filter(
            state=FrameState.QUEUED, job__is_canary=True, canary_answer__isnull=False, job__state__in=JOB_LIVE
        ).values_list("pk", "job__scene_id", "job__blender_series", "updated_at"):
            pool[(scene_id, series)].append((frame_id, version))
        scenes = list(pool)
        _random.shuffle(scenes)  # which scene a provider's node gets when it could get several
        for scene_id, series in scenes:
            frames = pool[(scene_id, series)]
            changed += _canary_scene_offer(
                scene_id=scene_id, series=series, frames=frames, online=online, owners=owners
            )
    return changed


def _canary_scene_offer(*, scene_id: int, series: str, frames: list[tuple[int, datetime]], online, owners=None) -> int:
    """Offer one of `frames` (of one scene) to one node without an offer of each provider that may get the scene,
    among the `online` nodes (and of `owners`, a query of provider ids, when given). Returns how many offers it
    made."""
    of_owners = Q() if owners is None else Q(node__owner_id__in=owners)
    seen = FrameLease.objects.filter(of_owners, frame__job__scene_id=scene_id).values("node__owner_id")
    held = NodeTrust.objects.filter(of_owners, canary__job__scene_id=scene_id).values("node__owner_id")
    candidates = list(
        NodeTrust.objects.filter(canary__isnull=True, node__in=online, node__blender_series__contains=series)
        .exclude(node__owner_id__in=seen)
        .exclude(node__owner_id__in=held)
        .values_list("pk", "node__owner_id", "node__blender_series")
    )
    _random.shuffle(candidates)  # a scene wanted by several nodes of a provider goes to any of them
    chosen: dict[int, int] = {}  # provider -> the trust row of its node that gets the scene
    for trust_id, owner_id, node_series in candidates:
        if series in node_series.split(","):  # as `WorkerNode.series` reads it: the column's match was loose
            chosen.setdefault(owner_id, trust_id)
    offered: dict[tuple[int, datetime], list[int]] = defaultdict(list)  # frame -> the trust rows offered it
    for trust_id in chosen.values():
        offered[secrets.choice(frames)].append(trust_id)
    for (frame_id, version), trust_ids in offered.items():  # a statement per frame, not per node
        for some in batched(trust_ids, _IDS_PER_STATEMENT):
            NodeTrust.objects.filter(pk__in=some).update(canary_id=frame_id, canary_updated_at=version)
    return len(chosen)


def canary_node_greeted(*, node_id: int) -> None:
    """A node said hello (dispatch's hook): it gets its canary offer now rather than at the next periodic run. Its
    own, after commit: a renewal of the whole farm at each hello would run back to back on a large one."""
    transaction.on_commit(lambda: _enqueue("verification.canary_offers", node_id))


def canary_offers_renew_soon() -> None:
    """Ask for `canary_offers_renew` after commit (coalesced): the pool of canaries or a provider's scenes changed."""
    transaction.on_commit(lambda: delay_once("verification.canary_offers", ttl_s=events.COALESCED_TTL_SECONDS))


# --- recovery -------------------------------------------------------------------------------


def checks_resume(*, now=None) -> int:
    """Beat task: move on checks whose messages or verifiers were lost. Returns how many were nudged."""
    now = now or timezone.now()
    nudged = 0
    gone = (FrameLease.State.FAILED, FrameLease.State.EXPIRED, FrameLease.State.RELEASED, FrameLease.State.REVOKED)
    for crop_id in CropCheck.objects.filter(
        state=CropCheck.State.PENDING, verifier=CropCheck.Verifier.NODE, verify_lease__state__in=gone
    ).values_list("pk", flat=True):
        with transaction.atomic():
            crop = CropCheck.objects.select_for_update().get(pk=crop_id)
            if crop.state == CropCheck.State.PENDING and crop.verifier == CropCheck.Verifier.NODE:
                _crop_to_platform(crop)  # the verifier gave up or vanished: the platform renders it
                nudged += 1
    stale = now - timedelta(seconds=conf.RESUME_AFTER_S)
    for lease_id in CropCheck.objects.filter(
        state=CropCheck.State.PENDING,
        verifier=CropCheck.Verifier.NODE,
        verify_lease__state=FrameLease.State.DONE,
        verify_lease__finished_at__lt=stale,
    ).values_list("verify_lease_id", flat=True):
        _enqueue("verification.crop_reported", lease_id)
        nudged += 1
    lost = now - timedelta(seconds=conf.PLATFORM_RESUME_AFTER_S)
    for crop_id in CropCheck.objects.filter(
        state=CropCheck.State.PENDING, verifier=CropCheck.Verifier.PLATFORM, dispatched_at__lt=lost
    ).values_list("pk", flat=True):
        CropCheck.objects.filter(pk=crop_id).update(dispatched_at=now)
        _enqueue("verification.platform_crop", crop_id)
        nudged += 1
    for check in FrameCheck.objects.filter(state=FrameCheck.State.PENDING, created_at__lt=stale):
        _check_advance(check)  # crops never dispatched (crash after commit), or a finish that never ran
    return nudged
