"""Reads of verification state shared by pages of several apps (jobs, nodes, disputes)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, Q
from django.http import Http404

from marketplace.jobs.states import JOB_LIVE, FrameState
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import node_is_banned, online_nodes
from marketplace.verification.models import CropCheck, FrameCheck, NodeTrust, TrustEvent


@dataclass(frozen=True)
class FrameStatus:
    """What the job page says about a frame's verification."""

    state: str  # FrameCheck.State value
    label: str
    crops_done: int
    crops_total: int
    reason: str


def frame_checks(job_id: int, frame_ids: list[int] | None = None) -> dict[int, FrameStatus]:
    """Verification status of each frame of a job (or of `frame_ids` of it) that has been checked or sampled: its
    latest check."""
    latest: dict[int, FrameCheck] = {}
    checks = (
        FrameCheck.objects.filter(frame__job_id=job_id).exclude(kind=FrameCheck.Kind.CANARY).order_by("frame_id", "pk")
    )
    if frame_ids is not None:
        checks = checks.filter(frame_id__in=frame_ids)
    for check in checks:
        latest[check.frame_id] = check
    done: dict[int, int] = {}
    total: dict[int, int] = {}
    for check_id, state in CropCheck.objects.filter(frame_check__in=latest.values()).values_list(
        "frame_check_id", "state"
    ):
        total[check_id] = total.get(check_id, 0) + 1
        done[check_id] = done.get(check_id, 0) + (state != CropCheck.State.PENDING)
    return {
        frame_id: FrameStatus(
            state=check.state,
            label=check.get_state_display(),
            crops_done=done.get(check.pk, 0),
            crops_total=total.get(check.pk, 0),
            reason=check.reason,
        )
        for frame_id, check in latest.items()
    }


def job_page_part(*, job, frame_ids: list[int]) -> dict:
    """The job page's per-frame check status (registered in jobs.extensions)."""
    return {"verification": frame_checks(job.pk, frame_ids)}


@dataclass(frozen=True)
class CheckRow:
    """One check on the node page. Its crops (positions, verdicts) only once the check is decided: a provider
    who saw where a pending check looks could render just those crops honestly and upload the rest cheap."""

    check: FrameCheck
    crops: list[CropCheck]
    crops_pending: int  # how many crops a pending check re-renders (no positions)


@dataclass(frozen=True)
class NodeVerification:
    node: WorkerNode
    trust: NodeTrust | None
    banned: bool
    events: list[TrustEvent]
    checks: list[CheckRow]


def node_verification(*, user, node_id: int, limit: int = 50) -> NodeVerification:
    """A node's trust, trust history and recent checks, for its owner and admins; 404 for anyone else."""
    nodes = WorkerNode.objects.select_related("owner")
    if not user.is_market_admin:
        nodes = nodes.filter(owner=user)
    node = nodes.filter(pk=node_id).first()
    if node is None:
        raise Http404("no such node")
    checks = FrameCheck.objects.filter(node=node).exclude(kind=FrameCheck.Kind.SKIPPED)
    if not user.is_market_admin:  # a provider never learns which of its frames were canaries
        checks = checks.exclude(kind=FrameCheck.Kind.CANARY)
    recent = list(checks.select_related("frame").order_by("-pk")[:limit])
    decided = [c.pk for c in recent if c.state != FrameCheck.State.PENDING]
    crops: dict[int, list[CropCheck]] = {}
    for crop in CropCheck.objects.filter(frame_check_id__in=decided).order_by("pk"):
        crops.setdefault(crop.frame_check_id, []).append(crop)
    pending = dict(
        CropCheck.objects.filter(frame_check__in=[c for c in recent if c.pk not in decided])
        .values_list("frame_check_id")
        .annotate(n=Count("id"))
    )
    rows = [CheckRow(check=c, crops=crops.get(c.pk, []), crops_pending=pending.get(c.pk, 0)) for c in recent]
    events = TrustEvent.objects.filter(node=node).select_related("frame").order_by("-created_at", "-pk")
    return NodeVerification(
        node=node,
        trust=NodeTrust.objects.filter(node=node).first(),
        banned=node_is_banned(node_id=node.pk),
        events=list(events[:limit]),
        checks=rows,
    )


def crop_evidence(*, frame_id: int, result_key: str) -> list[CropCheck]:
    """Decided crop checks of one result of a frame (node and platform verifiers), for dispute evidence."""
    return list(
        CropCheck.objects.filter(frame_check__frame_id=frame_id, frame_check__render_lease__result_key=result_key)
        .exclude(state=CropCheck.State.PENDING)
        .exclude(reference_key="")
        .select_related("frame_check__render_lease", "verify_lease")
        .order_by("pk")
    )


def canary_ready_q() -> Q:
    """`NodeTrust` rows whose canary can be handed out now: queued, of a live job, not leased by anyone since it
    was offered (`services.canary_frame_for` checks the same on the row matching loaded)."""
    return Q(
        canary__state=FrameState.QUEUED, canary__job__state__in=JOB_LIVE, canary__updated_at=F("canary_updated_at")
    )


def canary_coverage(now=None) -> tuple[int, int]:
    """(online nodes, those of them holding a canary they can be handed now). 0 offers: no canary job is open, or
    the providers online have seen every canary scene, and no canary check happens."""
    # One pass over the nodes online, with a hashed set of the nodes that have a canary ready: counting them apart
    # read the nodes online twice (bench_fleet).
    ready = NodeTrust.objects.filter(canary_ready_q()).values("node_id")
    counts = online_nodes(now).aggregate(online=Count("pk"), ready=Count("pk", filter=Q(pk__in=ready)))
    return counts["online"], counts["ready"]
