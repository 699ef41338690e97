"""Settling many frames in one transaction with one ledger call (the dispatch hot path, issue 17).

The batch form of `services.frame_settle`, with the same guarantees: a frame moves to SETTLED at most once
per render (a conditional UPDATE; a concurrent settler of the same frame waits on its row and then finds it
settled), and each payment posts under the frame's own key (`Frame.settlement_key`, `settle:frame:<id>[:n]`),
so a replay pays nothing twice and the ledger stays zero-sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from marketplace.compiled import placeholders
from marketplace.jobs import lifecycle
from marketplace.jobs.models import Frame, Job
from marketplace.jobs.services import frame_assemble_after_commit, frames_settled_log_after_commit
from marketplace.ledger.services import Release, release_escrow_many
from marketplace.logs import subject_scope
from marketplace.nodes.models import WorkerNode

User = get_user_model()


@subject_scope()  # many frames: each line names its own, none the caller's
@transaction.atomic(savepoint=False)  # inside a caller's transaction, a savepoint of its own would roll back nothing
def frames_settle(*, node_of: Mapping[int, int], lease_of: Mapping[int, int]) -> list[int]:
    """Pay these rendered (or verified) frames from escrow, each to `node_of[frame id]`'s provider, once.
    `lease_of[frame id]`: the render lease whose result is paid, for the frame's line.

    Returns the ids of the frames settled now; a frame already settled (or no longer settleable) is left out.
    """
    settled = lifecycle.frames_settle(node_of=node_of)
    if not settled:
        return []
    frames = _settled_read(sorted(settled))
    release_escrow_many(
        releases=[
            Release(
                artist=User(pk=f.artist_id),  # the ledger names accounts by owner id: no user row is read
                job_ref=Job.escrow_ref_of(f.job_id),
                provider=User(pk=f.provider_id),
                amount=f.price,
                key=Frame.settlement_key_of(f.id, f.settle_count),
                memo=f"frame {f.number} of job {f.job_id} rendered",
            )
            for f in frames
            if f.price
        ]
    )
    paid = [
        {
            "frame_id": f.id,
            "job_id": f.job_id,
            "node_id": node_of[f.id],
            "lease_id": lease_of[f.id],
            "price_micro": f.price,
        }
        for f in frames
    ]
    frames_settled_log_after_commit(paid=paid)
    for job_id, number in sorted({(f.job_id, f.number) for f in frames if f.tiled}):
        frame_assemble_after_commit(job_id=job_id, number=number)
    return [f.id for f in frames]


class _Settled(NamedTuple):
    id: int
    job_id: int
    number: int
    price: int
    settle_count: int
    tiled: bool
    artist_id: int
    provider_id: int


def _settled_read(frame_ids: list[int]) -> list[_Settled]:
    """What paying these just-settled frames needs, with their artists and providers, in one statement written out:
    the ORM's select_related of both owners' users compiled and built four models a frame, what a small farm's
    batch of one frame paid per frame (issue 17)."""
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT f.id, f.job_id, f.number, f.price, f.settle_count, f.tile_x IS NOT NULL, j.owner_id, n.owner_id"
            f" FROM {Frame._meta.db_table} f JOIN {Job._meta.db_table} j ON j.id = f.job_id"
            f" JOIN {WorkerNode._meta.db_table} n ON n.id = f.node_id WHERE f.id IN ({placeholders(len(frame_ids))})"
            " ORDER BY f.id",
            frame_ids,
        )
        return [
            _Settled(frame_id, job_id, number, price, settle_count, bool(tiled), artist_id, provider_id)
            for frame_id, job_id, number, price, settle_count, tiled, artist_id, provider_id in cur.fetchall()
        ]
