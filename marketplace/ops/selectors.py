"""What an operator needs to see of the farm, read from the database and the brokers at the moment of asking.

The database is the source of truth, so these are gauges computed at scrape time (the same numbers in every web
process, nothing to aggregate across gunicorn workers or Celery processes): nodes by state, frames of open jobs
by state, active leases, the age of the oldest frame waiting for a node (dispatch lag) and for settlement
(settlement lag), verification failures, the online nodes holding a canary, the depth of each Celery queue and of
the agents' queues, the heartbeats waiting to be written and the heartbeat pace. Each read follows the live work,
not the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

import redis
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from marketplace.dispatch import heartbeats
from marketplace.dispatch.models import FrameLease
from marketplace.jobs.models import Frame
from marketplace.jobs.states import JOB_LIVE, FrameState
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import heartbeat_pace, silence_seconds
from marketplace.verification.models import CropCheck, FrameCheck
from marketplace.verification.selectors import canary_coverage

AGENT_QUEUE_PATTERN = "agent:node:*:queue"


@dataclass(frozen=True)
class FarmSnapshot:
    nodes: dict[str, int]
    frames: dict[str, int]
    active_leases: dict[str, int]
    oldest_queued_s: float
    oldest_unsettled_s: float
    checks_failed: int
    crops_failed: int
    nodes_online: int = 0
    nodes_with_canary: int = 0  # online nodes holding a canary they can be handed now
    celery_queues: dict[str, int | None] = field(default_factory=dict)  # None: broker unreachable
    agent_queue_messages: int | None = None
    heartbeats_waiting: int | None = None  # gathered, not yet written (dispatch.heartbeats)
    heartbeat_seconds: int = 0  # the pace agents are told (nodes.services.heartbeat_pace_update)
    silence_seconds: int = 0  # a node unheard this long is offline
    taken_at: datetime = field(default_factory=timezone.now)


def _age(since: datetime | None, now: datetime) -> float:
    return max((now - since).total_seconds(), 0.0) if since else 0.0


def celery_queue_names() -> list[str]:
    """The default queue plus every queue a task is routed to."""
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    named = {r.get("queue") for r in routes.values() if isinstance(r, dict)}
    return sorted({getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery"), *(q for q in named if q)})


@cache
def _broker(url: str) -> redis.Redis:
    """One connection pool per broker URL and process, as `celery.internal_redis` and `nodes.broker.agent_redis`
    keep, but with a 2 s limit: a broker that does not answer reads as unreachable (None) instead of holding the
    scrape, and the web worker serving it, until the OS gives up on the socket."""
    return redis.Redis.from_url(url, socket_timeout=2)


def _celery_depths() -> dict[str, int | None]:
    try:
        client = _broker(settings.CELERY_BROKER_URL)
        return {name: int(client.llen(name)) for name in celery_queue_names()}
    except redis.RedisError:
        return dict.fromkeys(celery_queue_names())


def _heartbeats_waiting() -> int | None:
    try:
        return heartbeats.waiting(_broker(settings.CELERY_BROKER_URL))
    except redis.RedisError:
        return None


def _agent_depth() -> int | None:
    try:
        client = _broker(settings.AGENT_BROKER_URL)
        return sum(int(client.llen(key)) for key in client.scan_iter(AGENT_QUEUE_PATTERN, count=1000))
    except redis.RedisError:
        return None


def farm_snapshot() -> FarmSnapshot:
    now = timezone.now()
    nodes = dict.fromkeys(WorkerNode.Status.values, 0)
    nodes.update(WorkerNode.objects.values_list("status").annotate(n=Count("pk")))
    frames = dict.fromkeys(FrameState.values, 0)
    # Of open jobs only: counting every frame the market ever rendered read the whole history at each scrape
    # (bench_history). A finished job's frames are history: its artist's pages and the ledger keep them.
    frames.update(Frame.objects.filter(job__state__in=JOB_LIVE).values_list("state").annotate(n=Count("pk")))
    leases = dict.fromkeys(FrameLease.Kind.values, 0)
    leases.update(FrameLease.objects.filter(state=FrameLease.State.ACTIVE).values_list("kind").annotate(n=Count("pk")))
    waiting = Frame.objects.filter(state=FrameState.QUEUED, job__is_canary=False).aggregate(t=Min("updated_at"))["t"]
    unsettled = Frame.objects.filter(
        state__in=(FrameState.RENDERED, FrameState.VERIFYING), job__is_canary=False
    ).aggregate(t=Min("rendered_at"))["t"]
    online, with_canary = canary_coverage(now)
    return FarmSnapshot(
        nodes=nodes,
        frames=frames,
        active_leases=leases,
        oldest_queued_s=_age(waiting, now),
        oldest_unsettled_s=_age(unsettled, now),
        checks_failed=FrameCheck.objects.filter(state=FrameCheck.State.FAILED).count(),
        crops_failed=CropCheck.objects.filter(state=CropCheck.State.FAILED).count(),
        nodes_online=online,
        nodes_with_canary=with_canary,
        celery_queues=_celery_depths(),
        agent_queue_messages=_agent_depth(),
        heartbeats_waiting=_heartbeats_waiting(),
        heartbeat_seconds=heartbeat_pace().seconds,
        silence_seconds=silence_seconds(),
        taken_at=now,
    )
