"""The market's log entry points: each request and each Celery task binds the ids it concerns once, so every
line logged inside it carries them (formatting and secret scrubbing: workers.logs, shared with the agent).

- `RequestContextMiddleware`: a request id (the caller's `X-Request-ID` when it is a sane one, else a new one,
  returned in the response header), the signed-in user, and one access line per request (a routine heartbeat's at
  DEBUG);
- agent API views bind the node and, when the URL names one, the lease (dispatch.agent_api.AgentView);
- Celery's `task_prerun`/`task_postrun` (connected in marketplace.celery): the task's id, name and id arguments;
- `subject_scope`: code that handles many frames at once (a batch) drops the lease and frame ids bound around it,
  so each of its lines names its own frame's.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from structlog.contextvars import get_contextvars, unbind_contextvars

from workers.logs import bind, context_restore, scope

__all__ = [
    "RequestContextMiddleware",
    "bind",
    "lease_fields",
    "scope",
    "subject_scope",
    "task_finished",
    "task_started",
]

log = logging.getLogger("marketplace.request")

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is kept (a proxy's or a client's, to follow one call across systems) only when it
# cannot smuggle anything into a log line.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")


# The farm's most frequent call: every node at every heartbeat pace, ~1,700 a second at 100,000 nodes. Answered
# in under ROUTINE_SLOW_MS, its access line is at DEBUG, so the logs keep what an operator reads (django-prometheus
# counts every call); a refused, failed or slow one is at INFO like any other call.
ROUTINE_VIEWS = frozenset({"agent-heartbeat"})
ROUTINE_SLOW_MS = 1000


def request_id_for(incoming: str | None) -> str:
    return incoming if incoming and _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


class RequestContextMiddleware:
    """Binds `request_id` (and `user_id` for a session) for the request's lines and logs one access line.

    The access line names the URL pattern (`route`), not the path: a signed blob URL carries its token in the
    path, and a pattern groups the same endpoint's calls.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        started = time.monotonic()
        with scope(request_id=request_id):
            response = self.get_response(request)
            match = request.resolver_match
            view = match.view_name if match else None
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            routine = view in ROUTINE_VIEWS and response.status_code < 400 and duration_ms < ROUTINE_SLOW_MS
            level = logging.DEBUG if routine else logging.INFO
            if log.isEnabledFor(level):
                user = getattr(request, "user", None)  # DRF's token authentication sets it on this request too
                log.log(
                    level,
                    "request",
                    extra={
                        "method": request.method,
                        "route": "/" + match.route if match else None,
                        "view": view,
                        "status": response.status_code,
                        "duration_ms": duration_ms,
                        "user_id": user.pk if user is not None and user.is_authenticated else None,
                    },
                )
        response[REQUEST_ID_HEADER] = request_id
        return response

    def process_view(self, request, view_func, view_args, view_kwargs) -> None:
        # A session user is known here; an API token's user only once DRF authenticates (the access line has it).
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            bind(user_id=user.pk)


# The ids that say which lease, frame, job and node a line is about (`lease_fields`).
SUBJECT_IDS = ("lease_id", "frame_id", "job_id", "node_id", "lease_kind")


def lease_fields(lease) -> dict[str, object]:
    """A lease's ids for a log line or a context. Reads `lease.frame.job_id`: pass a lease whose frame is loaded."""
    return {
        "lease_id": lease.pk,
        "frame_id": lease.frame_id,
        "job_id": lease.frame.job_id,
        "node_id": lease.node_id,
        "lease_kind": lease.kind,
    }


@contextmanager
def subject_scope(**ids: object) -> Iterator[None]:
    """A block (or, as a decorator, a function) about other frames than its caller's: a batch of frames, a task.

    The lease, frame, job and node ids the caller bound (an agent call binds its lease's) are dropped for the
    block and `ids` bound; the caller's context is back afterwards. A line about one frame in the block then
    carries the ids it names itself, never a stale one of another frame.
    """
    saved = get_contextvars()
    unbind_contextvars(*SUBJECT_IDS)
    bind(**ids)
    try:
        yield
    finally:
        context_restore(saved)


# --- Celery ---------------------------------------------------------------------------------

# The context each running task replaced, by task id: an eager task (tests, a request that runs one inline)
# must hand its caller's context back intact, and a worker's next task must not inherit this one's ids.
_saved_contexts: dict[str, Mapping[str, object]] = {}


def task_ids(task, args: tuple, kwargs: dict) -> dict[str, object]:
    """The task's `…_id` arguments by name (`frame_rendered(7)` → {"frame_id": 7}), whether passed by position
    or keyword."""
    try:
        bound = inspect.signature(task.run).bind_partial(*(args or ()), **(kwargs or {}))
    except (TypeError, ValueError):  # arguments that do not fit the signature: the task itself will say so
        return {}
    return {
        name: value
        for name, value in bound.arguments.items()
        if name.endswith("_id") and isinstance(value, int | str) and not isinstance(value, bool)
    }


def task_started(*, task_id: str, task, args=(), kwargs=None, **_) -> None:
    _saved_contexts[task_id] = get_contextvars()
    # An eager task keeps its caller's request id, not the lease or frame the caller was about: its own are its
    # id arguments (a worker's task starts from an empty context anyway).
    unbind_contextvars(*SUBJECT_IDS)
    bind(**{**task_ids(task, args, kwargs or {}), "task_id": task_id, "task_name": task.name})


def task_finished(*, task_id: str, **_) -> None:
    saved = _saved_contexts.pop(task_id, None)
    if saved is not None:
        context_restore(saved)
