"""What verification plugs into matching and lease ends, inside dispatch's own transaction.

Verification sits above dispatch, so dispatch never imports it: verification registers these in its
AppConfig.ready(). Both run synchronously, where the after-commit events of `jobs.events` would be too late:
a canary must replace the frame being leased, a render lease's check is drawn in the statement that stores it,
and an abandoned lease costs the node trust in the transaction that ends it. What those need of a node is read
with it, in the statement that locks it (`node_reads`): a substitute that read more when it hit would make the
calls that hand one out slower than the others.
"""

from __future__ import annotations

from collections.abc import Callable

from marketplace.jobs.models import Frame
from marketplace.nodes.models import WorkerNode

FrameSubstitute = Callable[..., Frame | None]  # (*, node) -> a frame to lease instead, or None
LeaseAbandoned = Callable[..., object]  # (*, node_id, frame_id, reason)
LeaseSampler = Callable[..., bool | None]  # (*, node, frame, manifest) -> FrameLease.sampled
LeasesGranted = Callable[..., object]  # (*, leases): render leases just stored, sampled or not
NodeGreeted = Callable[..., object]  # (*, node_id): its agent said hello

_frame_substitutes: list[FrameSubstitute] = []
_lease_abandoned: list[LeaseAbandoned] = []
_lease_samplers: list[LeaseSampler] = []
_leases_granted: list[LeasesGranted] = []
_node_reads: list[str] = []
_node_greeted: list[NodeGreeted] = []


def node_reads_register(path: str) -> None:
    """`path` (select_related's form, from the node) is read with every node matching locks, before the first
    match: matching compiles its statements once."""
    if path not in _node_reads:
        _node_reads.append(path)


def node_reads() -> tuple[str, ...]:
    """The relations read with each node matching locks (`node_reads_register`)."""
    return tuple(_node_reads)


def frame_substitute_register(fn: FrameSubstitute) -> None:
    if fn not in _frame_substitutes:
        _frame_substitutes.append(fn)


def lease_abandoned_register(fn: LeaseAbandoned) -> None:
    if fn not in _lease_abandoned:
        _lease_abandoned.append(fn)


def lease_sampler_register(fn: LeaseSampler, then: LeasesGranted) -> None:
    """`fn` draws whether a render lease's result is checked; `then` is told of every round's leases once stored,
    the same way whatever was drawn: a sampled lease must cost its agent's call no more than another."""
    if fn not in _lease_samplers:
        _lease_samplers.append(fn)
        _leases_granted.append(then)


def node_greeted_register(fn: NodeGreeted) -> None:
    if fn not in _node_greeted:
        _node_greeted.append(fn)


def node_greeted(*, node_id: int) -> None:
    """A node's agent said hello (after its capabilities were stored)."""
    for fn in _node_greeted:
        fn(node_id=node_id)


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


def lease_sampled(*, node: WorkerNode, frame: Frame, manifest: dict) -> bool | None:
    """`FrameLease.sampled` of a render lease of `frame` to `node` (None: no sampler drew it)."""
    for fn in _lease_samplers:
        sampled = fn(node=node, frame=frame, manifest=manifest)
        if sampled is not None:
            return sampled
    return None


def leases_granted(*, leases: list) -> None:
    """These render leases were just stored (drawn or not)."""
    for fn in _leases_granted:
        fn(leases=leases)
