"""What jobs asks of the apps above it, without importing them: each registers its answers in AppConfig.ready().

- payments: `wallet_frozen` (a wallet that owes tokens after a refunded or disputed top-up may not quote, accept
  or retry);
- dispatch: `leases_revoke` (a cancelled frame's active lease ends in the cancel's own transaction, so its node
  is free at once), `node_blocks_clear` (the artist lets the nodes refused on a job render it again), the job
  page's waiting notice and the API's `waiting`;
- verification: the job page's per-frame check status;
- disputes: the job page's "Dispute" links (which of the page's frames can be disputed).

Page and API parts return context entries (name -> value) that the job page's templates and the API's job
serializer read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marketplace.jobs.models import Job

_wallet_frozen: list[Callable[..., bool]] = []
_leases_revoke: list[Callable[..., list[int]]] = []
_node_blocks_clear: list[Callable[..., int]] = []
_page_parts: list[Callable[..., dict[str, Any]]] = []
_api_parts: list[Callable[..., dict[str, Any]]] = []


def _register(registry: list, fn: Callable) -> None:
    if fn not in registry:  # ready() may run more than once
        registry.append(fn)


def wallet_frozen_register(fn: Callable[..., bool]) -> None:
    """`fn(*, user) -> bool`: True while the user's wallet owes tokens."""
    _register(_wallet_frozen, fn)


def leases_revoke_register(fn: Callable[..., list[int]]) -> None:
    """`fn(*, frame_ids, skip_locked) -> list[int]`: end the active leases of these frames being cancelled (passing
    over leases locked right now when `skip_locked`); the nodes whose leases ended, for the caller to sync."""
    _register(_leases_revoke, fn)


def node_blocks_clear_register(fn: Callable[..., int]) -> None:
    """`fn(*, job_id) -> int`: let the nodes kept off the job render it again; how many were let back."""
    _register(_node_blocks_clear, fn)


def page_part_register(fn: Callable[..., dict[str, Any]]) -> None:
    """`fn(*, job, frame_ids) -> dict`: entries of the job page's live context (`frame_ids`: the page's frames)."""
    _register(_page_parts, fn)


def api_part_register(fn: Callable[..., dict[str, Any]]) -> None:
    """`fn(*, job) -> dict`: fields of the job's API detail."""
    _register(_api_parts, fn)


def wallet_frozen(*, user) -> bool:
    return any(fn(user=user) for fn in _wallet_frozen)


def leases_revoke(*, frame_ids: list[int], skip_locked: bool) -> list[int]:
    return sorted({node for fn in _leases_revoke for node in fn(frame_ids=frame_ids, skip_locked=skip_locked)})


def node_blocks_clear(*, job_id: int) -> int:
    return sum(fn(job_id=job_id) for fn in _node_blocks_clear)


def page_parts(*, job: Job, frame_ids: list[int]) -> dict[str, Any]:
    parts: dict[str, Any] = {}
    for fn in _page_parts:
        parts.update(fn(job=job, frame_ids=frame_ids))
    return parts


def api_parts(*, job: Job) -> dict[str, Any]:
    parts: dict[str, Any] = {}
    for fn in _api_parts:
        parts.update(fn(job=job))
    return parts
