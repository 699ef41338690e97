from datetime import datetime

from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404
from django.utils import timezone

from marketplace.disputes.models import AuditLog, Dispute
from marketplace.jobs.conf import dispute_window
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.verification.models import CropCheck, TrustEvent
from marketplace.verification.selectors import crop_evidence


def frames_with_open_dispute(*, frame_ids: list[int]) -> set[int]:
    """Which of these frames have an open dispute (their pay is frozen)."""
    return set(
        Dispute.objects.filter(frame_id__in=frame_ids, state=Dispute.State.OPEN).values_list("frame_id", flat=True)
    )


def disputes_of_artist(*, artist) -> QuerySet[Dispute]:
    return Dispute.objects.filter(artist=artist).select_related("frame__job").order_by("-created_at")


def disputes_against(*, provider, limit: int = 50) -> QuerySet[Dispute]:
    return Dispute.objects.filter(provider=provider).select_related("frame__job").order_by("-created_at")[:limit]


def review_queue() -> QuerySet[Dispute]:
    """Open disputes, oldest first: the longest-frozen pay is decided first."""
    return (
        Dispute.objects.filter(state=Dispute.State.OPEN)
        .select_related("frame__job", "artist", "provider", "node")
        .order_by("created_at")
    )


def recently_decided(*, limit: int = 20) -> QuerySet[Dispute]:
    return (
        Dispute.objects.exclude(state=Dispute.State.OPEN)
        .select_related("frame__job", "decided_by")
        .order_by("-decided_at")[:limit]
    )


def dispute_for(*, user, dispute_id: int) -> Dispute:
    """The dispute if `user` may see it (its artist or an admin); 404 otherwise, so ids reveal nothing."""
    qs = Dispute.objects.select_related("frame__job", "artist", "provider", "node", "decided_by")
    if not user.is_market_admin:
        qs = qs.filter(artist=user)
    dispute = qs.filter(pk=dispute_id).first()
    if dispute is None:
        raise Http404("no such dispute")
    return dispute


def verification_crops(*, dispute: Dispute) -> list[CropCheck]:
    """The decided crop checks of the disputed result: re-rendered by other nodes or by the platform."""
    return crop_evidence(frame_id=dispute.frame_id, result_key=dispute.result_key) if dispute.result_key else []


def trust_history(*, node_id: int | None, limit: int = 30) -> list[TrustEvent]:
    if node_id is None:
        return []
    return list(TrustEvent.objects.filter(node_id=node_id).order_by("-created_at", "-id")[:limit])


def audit_entries(*, dispute: Dispute) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(object_type="dispute", object_id=str(dispute.pk)).select_related("actor")


def dispute_of_settlement(*, frame: Frame) -> Dispute | None:
    """The dispute the artist opened on the frame's current result (a re-rendered frame can be disputed anew)."""
    if frame.settled_at is None:
        return None
    return Dispute.objects.filter(frame_id=frame.pk, frame_settled_at=frame.settled_at).first()


def dispute_deadline(*, frame: Frame) -> datetime | None:
    """When the artist's right to dispute the frame's current result ends; None before it settled."""
    return frame.settled_at + dispute_window() if frame.settled_at else None


def disputable_frame_ids(*, frame_ids: list[int]) -> set[int]:
    """Those of these frames the artist may dispute now, in one query. A settled frame can be disputed until its
    dispute window closes, once per result (a result disputed once offers no second dispute; a frame re-rendered
    after an upheld dispute can be disputed anew)."""
    disputed = Dispute.objects.filter(frame_id=OuterRef("pk"), frame_settled_at=OuterRef("settled_at"))
    return set(
        Frame.objects.filter(
            pk__in=frame_ids, state=FrameState.SETTLED, settled_at__gt=timezone.now() - dispute_window()
        )
        .exclude(Exists(disputed))
        .values_list("pk", flat=True)
    )


def job_page_part(*, job, frame_ids: list[int]) -> dict:
    """The job page's "Dispute" links: which frames of the page offer one (registered in jobs.extensions)."""
    return {"disputable_frames": disputable_frame_ids(frame_ids=frame_ids)}


def frame_of_artist(*, artist, frame_id: int) -> Frame:
    frame = Frame.objects.select_related("job").filter(pk=frame_id, job__owner=artist).first()
    if frame is None:
        raise Http404("no such frame")
    return frame
