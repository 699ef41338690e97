"""Frame pay leaves the dispute window: provider pending -> provider available, once per frame.

`jobs.services.frame_settle` paid the frame's price minus the platform fee into the provider's pending
account. After DISPUTE_WINDOW_HOURS, unless a dispute is open, exactly what that settlement posted there
(not a recomputation: the fee setting may have changed since) becomes available for payout (ledger key
`mature:frame:<id>`, an EarningMaturation row, and the frame's `pay_matured_at`). The frame rows are locked
while deciding, as `disputes.services.dispute_open` locks its frame, so a dispute and the maturation never both
win.

Set-oriented (issue 17): a busy farm settles more frames a second than a transaction per frame could mature
(10,000 nodes at a frame a minute settle 167 a second). Each transaction matures a batch of due frames with one
ledger call, in a number of statements that does not grow with the batch; a run takes batches until none is due.
"""

import logging
from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from marketplace.disputes.selectors import frames_with_open_dispute
from marketplace.jobs import lifecycle
from marketplace.jobs.conf import dispute_window
from marketplace.jobs.models import Frame
from marketplace.jobs.selectors import pay_maturation_key
from marketplace.ledger.models import Account
from marketplace.ledger.selectors import posted_to_owners
from marketplace.ledger.services import LedgerError, Leg, Transfer, accounts_by, transfers
from marketplace.payments.models import EarningMaturation
from marketplace.payments.selectors import frames_due_to_mature

log = logging.getLogger("payments")
Kind = Account.Kind

# Frames per transaction: each batch holds its frames' row locks (a dispute opened on one waits) until it commits.
MATURE_BATCH = 500


def earnings_mature(*, now: datetime | None = None, batch: int = MATURE_BATCH) -> int:
    """Mature every due frame, oldest first, `batch` frames per transaction. Returns how many matured.

    A frame another transaction holds (a dispute being opened, an overlapping run) is left for the next run."""
    cutoff = (now or timezone.now()) - dispute_window()
    matured, after = 0, None
    while True:
        count, after = _mature_batch(cutoff=cutoff, after=after, size=batch)
        matured += count
        if after is None:
            return matured


@transaction.atomic
def _mature_batch(*, cutoff: datetime, after: tuple[datetime, int] | None, size: int) -> tuple[int, tuple | None]:
    """Mature the first `size` due frames after `after` (settled_at, id). Returns how many matured and where the
    next batch starts (None: none is left). A frame left due here (nothing could be posted) is not read again in
    this run."""
    due = frames_due_to_mature(cutoff=cutoff)
    if after is not None:
        due = due.filter(Q(settled_at__gt=after[0]) | Q(settled_at=after[0], pk__gt=after[1]))
    frames = list(
        due.select_for_update(of=("self",), no_key=True, skip_locked=True).select_related("node__owner")[:size]
    )
    if not frames:
        return 0, None
    following = (frames[-1].settled_at, frames[-1].pk) if len(frames) == size else None
    # Read after the locks, in a statement of its own: a dispute committed while the batch was being read froze it.
    frozen = frames_with_open_dispute(frame_ids=[f.pk for f in frames])
    frames = [f for f in frames if f.pk not in frozen]
    shares = posted_to_owners(kind=Kind.PROVIDER_PENDING, keys=[f.settlement_key for f in frames])
    owed = [(f, shares.get((f.settlement_key, f.node.owner_id), 0)) for f in frames]
    matured = _release([(f, share) for f, share in owed if share > 0])
    # The frames whose settlement left their provider nothing pending have nothing to mature: done with as well.
    done = [f.pk for f, share in owed if share <= 0] + [f.pk for f, _ in matured]
    lifecycle.frames_pay_matured(frame_ids=done, at=timezone.now())
    return len(matured), following


def _release(owed: Sequence[tuple[Frame, int]]) -> list[tuple[Frame, int]]:
    """Move each frame's share from its provider's pending to available account, in one ledger call; the ones
    that moved. When the batch is refused (a pending balance does not hold a share), each frame is tried alone
    and the one refused is left for an admin."""
    if not owed:
        return []
    kinds = (Kind.PROVIDER_PENDING, Kind.PROVIDER_AVAILABLE)
    accounts = accounts_by(*[(kind, f.node.owner, "") for f, _ in owed for kind in kinds])
    moves = [
        Transfer(
            key=pay_maturation_key(f.pk),
            memo=f"earnings of frame {f.number} of job {f.job_id} matured",
            legs=[
                Leg(accounts[(Kind.PROVIDER_PENDING, f.node.owner, "")], -share),
                Leg(accounts[(Kind.PROVIDER_AVAILABLE, f.node.owner, "")], share),
            ],
            metadata={"frame": f.pk},
        )
        for f, share in owed
    ]
    try:
        posted = [p.created for p in transfers(transfers=moves)]
        moved = list(zip(owed, posted, strict=True))
    except LedgerError:
        moved = []
        for item, move in zip(owed, moves, strict=True):
            try:
                moved.append((item, transfers(transfers=[move])[0].created))
            except LedgerError:
                log.exception(
                    "event=earnings_not_matured: the frame's earnings could not mature", extra={"frame_id": item[0].pk}
                )
    # A maturation posted earlier (a replayed key) has its row already.
    EarningMaturation.objects.bulk_create(
        EarningMaturation(frame=f, provider=f.node.owner, amount_micro=share)
        for (f, share), created in moved
        if created
    )
    return [item for item, _ in moved]
