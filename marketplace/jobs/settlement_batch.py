"""Settling many frames in one transaction with one ledger call (the dispatch hot path, issue 17).

The batch form of `services.frame_settle`, with the same guarantees: a frame moves to SETTLED at most once
per render (a conditional UPDATE; a concurrent settler of the same frame waits on its row and then finds it
settled), and each payment posts under the frame's own key (`Frame.settlement_key`, `settle:frame:<id>[:n]`),
so a replay pays nothing twice and the ledger stays zero-sum.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from marketplace.jobs import lifecycle_batch
from marketplace.jobs.models import Frame
from marketplace.jobs.services import _assemble_after_commit, job_finish_if_complete
from marketplace.ledger.services import Release, release_escrow_many


@transaction.atomic
def frames_settle(*, node_of: Mapping[int, int]) -> list[int]:
    """Pay these rendered (or verified) frames from escrow, each to `node_of[frame id]`'s provider, once.

    Returns the ids of the frames settled now; a frame already settled (or no longer settleable) is left out.
    """
    settled = lifecycle_batch.frames_settle(node_of=node_of)
    if not settled:
        return []
    frames = list(Frame.objects.filter(pk__in=settled).select_related("job__owner", "node__owner").order_by("pk"))
    release_escrow_many(
        releases=[
            Release(
                artist=f.job.owner,
                job_ref=f.job.escrow_ref,
                provider=f.node.owner,
                amount=f.price,
                key=f.settlement_key,
                memo=f"frame {f.number} of job {f.job_id} rendered",
            )
            for f in frames
            if f.price
        ]
    )
    for job_id in sorted({f.job_id for f in frames}):
        transaction.on_commit(lambda job_id=job_id: job_finish_if_complete(job_id=job_id))
    for job_id, number in sorted({(f.job_id, f.number) for f in frames if f.tile_x is not None}):
        _assemble_after_commit(job_id=job_id, number=number)
    return [f.pk for f in frames]
