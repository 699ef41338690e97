from django.db import transaction
from django.utils import timezone

from marketplace.verification import policy
from marketplace.verification.models import NodeTrust, TrustEvent


def node_trust_get(*, node_id: int) -> NodeTrust:
    trust, _ = NodeTrust.objects.get_or_create(node_id=node_id)
    return trust


@transaction.atomic
def trust_record(*, node_id: int, passed: bool, reason: str, frame_id: int | None = None,
                 kind: str | None = None) -> NodeTrust:
    """Record a check result. One failure resets the streak; BAN_AFTER_FAILURES failures ban the node."""
    node_trust_get(node_id=node_id)
    trust = NodeTrust.objects.select_for_update().get(node_id=node_id)
    if passed:
        trust.consecutive_passes += 1
        trust.checks_passed += 1
    else:
        trust.consecutive_passes = 0
        trust.checks_failed += 1
    trust.check_rate = policy.check_rate(consecutive_passes=trust.consecutive_passes)
    event_kind = kind or (TrustEvent.Kind.PASS if passed else TrustEvent.Kind.FAIL)
    TrustEvent.objects.create(node_id=node_id, kind=event_kind, reason=reason, frame_id=frame_id)
    if not passed and trust.banned_at is None and trust.checks_failed >= policy.BAN_AFTER_FAILURES:
        trust.banned_at = timezone.now()
        TrustEvent.objects.create(node_id=node_id, kind=TrustEvent.Kind.BAN,
                                  reason=f"{trust.checks_failed} failed checks", frame_id=frame_id)
    trust.save()
    return trust


def frame_verify_or_settle(*, frame_id: int) -> None:
    """Entry point after a frame's result is committed. (Interim: settles directly; crop checks pending.)"""
    from marketplace.jobs.models import Frame
    from marketplace.jobs.services import frame_settle

    frame = Frame.objects.get(pk=frame_id)
    frame_settle(frame_id=frame.pk, node_id=frame.node_id)
