"""What happened to frames, told after commit to the Celery tasks of the apps that react to it.

`jobs.lifecycle` emits these; nothing in jobs knows who listens. An app above jobs subscribes its task (by
name) in its AppConfig.ready(), so the import goes downward only. Each subscribed task is called with the
event's keyword arguments, once the transaction that made the move commits (never on a rollback); tasks
are idempotent (a move is a conditional UPDATE, so the task reads the row again and finds it moved on).

| event | kwargs | emitted by (jobs.lifecycle) |
|---|---|---|
| frames_queued | frame_ids | frames_create, frame_requeue, frame_result_discard, frames_retry, frame_dispute_reopen |
| frame_rendered | frame_id | frame_rendered |
| frame_settled | frame_id, job_id | frame_settle |
| frame_failed | frame_id, job_id | frame_fail |
"""

from __future__ import annotations

from functools import partial

from django.db import transaction

from marketplace.celery import app, delay_once

FRAMES_QUEUED = "frames_queued"
FRAME_RENDERED = "frame_rendered"
FRAME_SETTLED = "frame_settled"
FRAME_FAILED = "frame_failed"

_subscribers: dict[str, list[str]] = {
    event: [] for event in (FRAMES_QUEUED, FRAME_RENDERED, FRAME_SETTLED, FRAME_FAILED)
}


_coalesced: set[str] = set()
COALESCED_TTL_SECONDS = 5


def subscribe(event: str, task_name: str, *, coalesce: bool = False) -> None:
    """Call the Celery task `task_name` after each commit that emits `event` (idempotent: once per name).

    `coalesce`: the task handles every frame waiting for it when it runs, so an emit while a copy is queued and
    not yet started sends nothing (`marketplace.celery.delay_once`; the task calls `pending_clear` first).
    """
    if task_name not in _subscribers[event]:  # KeyError: no such event
        _subscribers[event].append(task_name)
    if coalesce:
        _coalesced.add(task_name)


def subscribers(event: str) -> tuple[str, ...]:
    return tuple(_subscribers[event])


def emit(event: str, **kwargs: object) -> None:
    """Deliver `event` to its subscribers once the current transaction commits (at once outside one)."""
    if event not in _subscribers:
        raise KeyError(f"no such event: {event}")
    transaction.on_commit(partial(_deliver, event, kwargs))


def _deliver(event: str, kwargs: dict) -> None:
    for task_name in _subscribers[event]:
        if task_name in _coalesced:
            delay_once(task_name, ttl_s=COALESCED_TTL_SECONDS, **kwargs)
        else:
            app.tasks[task_name].delay(**kwargs)  # a registered task honours CELERY_TASK_ALWAYS_EAGER in tests
