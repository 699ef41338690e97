"""What verification plugs into matching and lease ends, inside dispatch's own transaction.

Verification sits above dispatch, so dispatch never imports it: verification registers these in its
AppConfig.ready(). Both run synchronously, where the after-commit events of `jobs.events` would be too late:
a canary must replace the frame being leased, and an abandoned lease costs the node trust in the transaction
that ends it.
"""

from __future__ import annotations

from collections.abc import Callable

from marketplace.jobs.models import Frame
from marketplace.nodes.models import WorkerNode

FrameSubstitute = Callable[..., Frame | None]  # (*, node) -> a frame to lease instead, or None
LeaseAbandoned = Callable[..., object]  # (*, node_id, frame_id, reason)

_frame_substitutes: list[FrameSubstitute] = []
_lease_abandoned: list[LeaseAbandoned] = []


def frame_substitute_register(fn: FrameSubstitute) -> None:
    if fn not in _frame_substitutes:
        _frame_substitutes.append(fn)


def lease_abandoned_register(fn: LeaseAbandoned) -> None:
    if fn not in _lease_abandoned:
        _lease_abandoned.append(fn)


def frame_substitute(*, node: WorkerNode) -> Frame | None:
    """The frame to lease to `node` instead of its next artist frame (a canary), or None."""
    for fn in _frame_substitutes:
        frame = fn(node=node)
        if frame is not None:
            return frame
    return None


def lease_abandoned(*, node_id: int, frame_id: int, reason: str) -> None:
    """A lease of this node expired or was released."""
    for fn in _lease_abandoned:
        fn(node_id=node_id, frame_id=frame_id, reason=reason)
