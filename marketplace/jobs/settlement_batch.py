"""Settling many frames in one transaction with one ledger call (the dispatch hot path, issue 17).

The batch form of `services.frame_settle`, with the same guarantees: a frame moves to SETTLED at most once
per render (a conditional UPDATE; a concurrent settler of the same frame waits on its row and then finds it
settled), and each payment posts under the frame's own key (`Frame.settlement_key`, `settle:frame:<id>[:n]`),
so a replay pays nothing twice and the ledger stays zero-sum.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame
from marketplace.jobs.services import frame_assemble_after_commit, frames_settled_log_after_commit
from marketplace.ledger.services import Release, release_escrow_many
from marketplace.logs import subject_scope


@subject_scope()  # many frames: each line names its own, none the caller's
@transaction.atomic
def frames_settle(*, node_of: Mapping[int, int], lease_of: Mapping[int, int]) -> list[int]:
    """Pay these rendered (or verified) frames from escrow, each to `node_of[frame id]`'s provider, once.
    `lease_of[frame id]`: the render lease whose result is paid, for the frame's line.

    Returns the ids of the frames settled now; a frame already settled (or no longer settleable) is left out.
    """
    settled = lifecycle.frames_settle(node_of=node_of)
    if not settled:
        return []
    frames = list(Frame.objects.filter(pk__in=settled).select_related("job__owner", "node__owner").order_by("pk"))
    releases = []
    for f in frames:
        if not f.price:
            continue
        assert f.node is not None  # frames_settle has just set it
        releases.append(
            Release(
                artist=f.job.owner,
                job_ref=f.job.escrow_ref,
                provider=f.node.owner,
                amount=f.price,
                key=f.settlement_key,
                memo=f"frame {f.number} of job {f.job_id} rendered",
            )
        )
    release_escrow_many(releases=releases)
    paid = [
        {"frame_id": f.pk, "job_id": f.job_id, "node_id": f.node_id, "lease_id": lease_of[f.pk], "price_micro": f.price}
        for f in frames
    ]
    frames_settled_log_after_commit(paid=paid)
    for job_id, number in sorted({(f.job_id, f.number) for f in frames if f.tile_x is not None}):
        frame_assemble_after_commit(job_id=job_id, number=number)
    return [f.pk for f in frames]
