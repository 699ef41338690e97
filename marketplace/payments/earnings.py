"""Frame pay leaves the dispute window: provider pending -> provider available, once per frame.

`jobs.services.frame_settle` paid the frame's price minus the platform fee into the provider's pending
account. After DISPUTE_WINDOW_HOURS, unless a dispute is open, exactly what that settlement posted there
(not a recomputation: the fee setting may have changed since) becomes available for payout (ledger key
`mature:frame:<id>`, plus an EarningMaturation row). The frame row is locked while deciding,
as `disputes.services.dispute_open` does, so a dispute and the maturation never both win.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from marketplace.disputes.selectors import frame_has_open_dispute
from marketplace.jobs.conf import dispute_window
from marketplace.jobs.models import Frame
from marketplace.jobs.selectors import pay_maturation_key
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import Account
from marketplace.ledger.selectors import posted_to
from marketplace.ledger.services import LedgerError, Leg, account_get, transfer
from marketplace.payments.models import EarningMaturation
from marketplace.payments.selectors import frames_due_to_mature

log = logging.getLogger("payments")
Kind = Account.Kind


@transaction.atomic
def earning_mature(*, frame_id: int, cutoff: datetime) -> bool:
    """Release one frame's pending pay if it is still due. True when it moved."""
    frame = (
        Frame.objects.select_for_update(of=("self",), no_key=True)
        .select_related("node__owner")
        .filter(pk=frame_id, state=FrameState.SETTLED, settled_at__lte=cutoff, node__isnull=False)
        .first()
    )
    if frame is None or frame_has_open_dispute(frame_id=frame.pk):
        return False
    if EarningMaturation.objects.filter(frame_id=frame.pk).exists():
        return False
    provider = frame.node.owner
    share = posted_to(kind=Kind.PROVIDER_PENDING, owner=provider, keys=[frame.settlement_key]).get(
        frame.settlement_key, 0
    )
    if share <= 0:
        return False
    pending = account_get(kind=Kind.PROVIDER_PENDING, owner=provider)
    transfer(
        key=pay_maturation_key(frame.pk),
        memo=f"earnings of frame {frame.number} of job {frame.job_id} matured",
        legs=[Leg(pending, -share), Leg(account_get(kind=Kind.PROVIDER_AVAILABLE, owner=provider), share)],
        metadata={"frame": frame.pk},
    )
    EarningMaturation.objects.create(frame=frame, provider=provider, amount_micro=share)
    return True


def earnings_mature(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Mature every due frame (oldest first, at most `limit` per run); one transaction per frame."""
    cutoff = (now or timezone.now()) - dispute_window()
    matured = 0
    for frame_id in list(frames_due_to_mature(cutoff=cutoff)[:limit]):
        try:
            matured += earning_mature(frame_id=frame_id, cutoff=cutoff)
        except LedgerError:
            # e.g. the pending balance does not hold the share: leave it for an admin, keep going.
            log.exception(
                "event=earnings_not_matured: the frame's earnings could not mature", extra={"frame_id": frame_id}
            )
    return matured
