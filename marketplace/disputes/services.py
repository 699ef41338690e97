"""Opening and deciding disputes. Each function is one transaction and writes an audit entry.

Both opening a dispute and maturing a frame's pay lock the frame row, so a dispute either freezes the
pay before it matures or is refused because it matured (`payments.earnings`); the pay a dispute reverses
is therefore always still pending.

Deciding is claimed with a conditional UPDATE (state open -> decided): of concurrent decisions exactly
one changes a row; a repeated identical decision (double click) returns the first, a different one is
refused. Upholding, in the same transaction:
  - reverses the frame's settlement in one ledger transaction `dispute:<id>:uphold`: what it posted to the
    provider's pending account and to platform revenue goes to the artist's wallet;
  - records a trust failure for the node (`verification.services.trust_record`, kind dispute_upheld);
  - if the job is still live, holds the price in escrow again (`dispute:<id>:rehold`), moves the frame
    SETTLED -> QUEUED (and a DONE job back to RUNNING) so it is rendered again; if the job was cancelled
    or failed, the frame is cancelled and the artist keeps the refund.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.dispatch.services import node_block_for_job
from marketplace.disputes import conf
from marketplace.disputes.models import AuditLog, Dispute
from marketplace.disputes.selectors import dispute_deadline
from marketplace.errors import Conflict, Forbidden, NotFound, Refused
from marketplace.jobs import lifecycle
from marketplace.jobs.conf import dispute_window
from marketplace.jobs.models import Frame
from marketplace.jobs.selectors import frame_pay_matured
from marketplace.jobs.states import FrameState, JobState
from marketplace.ledger.models import Account
from marketplace.ledger.selectors import transaction_postings
from marketplace.ledger.services import Leg, account_get, hold_escrow, transfer
from marketplace.verification.models import TrustEvent
from marketplace.verification.services import trust_record

log = logging.getLogger("disputes")
Kind = Account.Kind
State = Dispute.State
LIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.DONE)


class DisputeNotFound(NotFound):
    """No such frame or dispute for this user (ids reveal nothing)."""


class DisputeRefused(Conflict):
    """A dispute or decision that cannot be made; nothing changed."""


class DisputeTextRefused(Refused, DisputeRefused):
    """A reason or note that is too short or too long: bad input (400), not a conflict with the state."""


class NotAdmin(Forbidden):
    """Only market admins review disputes."""


def audit(*, actor, action: str, obj: Dispute, details: dict) -> AuditLog:
    log.info(
        "event=%s",
        action,
        extra={
            "dispute_id": obj.pk,
            "frame_id": obj.frame_id,
            "job_id": obj.frame.job_id,
            "node_id": obj.node_id,
            "actor_id": actor.pk,
        },
    )
    return AuditLog.objects.create(
        actor=actor, action=action, object_type="dispute", object_id=str(obj.pk), details=details
    )


def _clean_text(text: object, *, what: str, min_chars: int, max_chars: int) -> str:
    text = str(text or "").strip()
    if len(text) < min_chars:
        raise DisputeTextRefused(f"Please give {what} of at least {min_chars} characters.")
    if len(text) > max_chars:
        raise DisputeTextRefused(f"{what.capitalize()} is limited to {max_chars} characters.")
    return text


@transaction.atomic
def dispute_open(*, artist, frame_id: int, reason: str) -> Dispute:
    """The artist disputes a settled frame of their own job, within the window after it settled."""
    frame = (
        Frame.objects.select_for_update(of=("self",), no_key=True)
        .select_related("job", "node")
        .filter(pk=frame_id, job__owner=artist)
        .first()
    )
    if frame is None:
        raise DisputeNotFound("no such frame")
    reason = _clean_text(reason, what="a reason", min_chars=conf.REASON_MIN_CHARS, max_chars=conf.REASON_MAX_CHARS)
    if frame.state != FrameState.SETTLED or frame.settled_at is None:
        raise DisputeRefused(f"Only a finished frame can be disputed; this one is {frame.get_state_display()}.")
    deadline = dispute_deadline(frame=frame)
    if timezone.now() > deadline:
        raise DisputeRefused(
            f"The dispute window for this frame closed on {deadline:%Y-%m-%d %H:%M} UTC "
            f"({dispute_window().total_seconds() / 3600:g} hours after it was delivered)."
        )
    if frame.node is None:
        raise DisputeRefused("This frame has no provider to dispute (its node was removed).")
    if frame_pay_matured(frame_id=frame.pk):
        raise DisputeRefused("The provider has already been paid for this frame.")
    if Dispute.objects.filter(frame=frame, frame_settled_at=frame.settled_at).exists():
        raise DisputeRefused("You have already disputed this frame.")
    try:
        with transaction.atomic():
            dispute = Dispute.objects.create(
                frame=frame,
                artist=artist,
                reason=reason,
                frame_settled_at=frame.settled_at,
                node=frame.node,
                provider=frame.node.owner,
                amount_micro=frame.price,
                result_key=frame.result_key,
            )
    except IntegrityError as exc:
        raise DisputeRefused("You have already disputed this frame.") from exc
    audit(
        actor=artist,
        action="dispute.opened",
        obj=dispute,
        details={"frame": frame.pk, "job": frame.job_id, "node": frame.node_id, "amount_micro": frame.price},
    )
    return dispute


def dispute_decide(*, admin, dispute_id: int, decision: str, note: str) -> Dispute:
    """Uphold or reject an open dispute; see the module docstring for what upholding does."""
    if not getattr(admin, "is_market_admin", False):
        raise NotAdmin("Only admins decide disputes.")
    if decision not in (State.UPHELD, State.REJECTED):
        raise DisputeRefused("The decision must be to uphold or to reject the dispute.")
    note = _clean_text(note, what="a decision note", min_chars=1, max_chars=conf.NOTE_MAX_CHARS)
    with transaction.atomic():
        claimed = Dispute.objects.filter(pk=dispute_id, state=State.OPEN).update(
            state=decision, decided_by=admin, decided_at=timezone.now(), decision_note=note
        )
        dispute = (
            Dispute.objects.select_related("frame__job", "artist", "provider", "decided_by")
            .filter(pk=dispute_id)
            .first()
        )
        if dispute is None:
            raise DisputeNotFound("no such dispute")
        if not claimed:
            if dispute.state == decision:
                return dispute  # the same decision again (double click): already done once
            raise DisputeRefused(
                f"This dispute was already {dispute.get_state_display().lower()} by "
                f"{dispute.decided_by} at {dispute.decided_at:%Y-%m-%d %H:%M} UTC."
            )
        details: dict = {"frame": dispute.frame_id, "note": note}
        if decision == State.UPHELD:
            details.update(_uphold(dispute))
        audit(actor=admin, action=f"dispute.{decision}", obj=dispute, details=details)
    return dispute


def _uphold(dispute: Dispute) -> dict:
    """The money and frame effects of upholding; runs inside dispute_decide's transaction."""
    frame = Frame.objects.select_for_update(of=("self",), no_key=True).select_related("job").get(pk=dispute.frame_id)
    if frame.state != FrameState.SETTLED or frame.settled_at != dispute.frame_settled_at:
        raise DisputeRefused("The frame changed since it was disputed; nothing was done.")
    if frame_pay_matured(frame_id=frame.pk):
        raise DisputeRefused("The provider's pay for this frame has already matured; nothing was done.")
    amount = dispute.amount_micro
    # Undo exactly what the settlement posted (provider share, platform fee), whatever the fee is today.
    paid = [p for p in transaction_postings(key=frame.settlement_key) if p.account.kind != Kind.JOB_ESCROW]
    keys = {}
    if paid:
        legs = [Leg(p.account, -p.amount) for p in paid]
        legs.append(Leg(account_get(kind=Kind.ARTIST_WALLET, owner=dispute.artist), sum(p.amount for p in paid)))
        transfer(
            key=f"dispute:{dispute.pk}:uphold",
            memo=f"dispute {dispute.pk} upheld: frame {frame.number} of job {frame.job_id} refunded",
            legs=legs,
            metadata={"dispute": dispute.pk, "frame": frame.pk},
        )
        keys["refund"] = f"dispute:{dispute.pk}:uphold"
    if dispute.node_id is not None:
        trust_record(
            node_id=dispute.node_id,
            passed=False,
            frame_id=frame.pk,
            kind=TrustEvent.Kind.DISPUTE_UPHELD,
            reason=f"dispute {dispute.pk} upheld: {dispute.decision_note}",
        )
    job = frame.job
    rerender = job.state in LIVE_JOB_STATES
    # Re-rendered: its event asks for matching. Otherwise cancelled: a cancelled or failed job renders nothing more.
    if not lifecycle.frame_dispute_upheld(frame_id=frame.pk, rerender=rerender):
        raise DisputeRefused("The frame changed since it was disputed; nothing was done.")
    if rerender:
        if dispute.node_id is not None:
            node_block_for_job(job_id=job.pk, node_id=dispute.node_id)  # re-rendered elsewhere
        if amount:
            keys["rehold"] = f"dispute:{dispute.pk}:rehold"
            hold_escrow(artist=dispute.artist, job_ref=job.escrow_ref, amount=amount, key=keys["rehold"])
        if job.state == JobState.DONE:
            lifecycle.job_reopen(job_id=job.pk, current=JobState.DONE)
        return {"ledger": keys, "frame": "re-queued"}
    return {"ledger": keys, "frame": "cancelled"}  # the refund stays with the artist
