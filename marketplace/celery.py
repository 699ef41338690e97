"""Internal Celery app: tasks of the marketplace itself (inspection, matching, reaping, settlement).

Agents never consume from this broker; they get their own (see dispatch.agent_broker).
"""

import logging.config
import os

import redis
from celery import Celery, signals

from marketplace import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_internal_redis: redis.Redis | None = None


def internal_redis() -> redis.Redis:
    """The internal broker's Redis, for the market's own small flags next to its task queues."""
    global _internal_redis  # noqa: PLW0603 - one connection pool per process
    if _internal_redis is None:
        _internal_redis = redis.Redis.from_url(app.conf.broker_url)
    return _internal_redis


def _pending_key(task_name: str) -> str:
    return f"task:pending:{task_name}"


def delay_once(task_name: str, *, ttl_s: int, **kwargs: object) -> bool:
    """Queue `task_name` unless a copy is queued and not yet started; True when this call queued it.

    For a task that handles everything waiting when it runs (matching, a batch of rendered frames): one queued
    copy serves a burst of requests, instead of one Celery send each (issue 17). The task calls `pending_clear`
    as it starts, so a request made from then on queues a new copy; the mark expires after `ttl_s` in case its
    message is lost.
    """
    key = _pending_key(task_name)
    if not internal_redis().set(key, 1, nx=True, ex=ttl_s):
        return False
    try:
        app.tasks[task_name].delay(**kwargs)  # a registered task honours CELERY_TASK_ALWAYS_EAGER in tests
    except Exception:
        internal_redis().delete(key)  # not queued: the next request must try again
        raise
    return True


def pending_clear(task_name: str) -> None:
    """Called by a `delay_once` task as it starts (see there)."""
    internal_redis().delete(_pending_key(task_name))


# Every task's lines carry its id, name and id arguments (marketplace.logs).
signals.task_prerun.connect(logs.task_started, weak=False)
signals.task_postrun.connect(logs.task_finished, weak=False)


@signals.setup_logging.connect(weak=False)
def keep_django_logging(**_) -> None:
    """A worker logs through settings.LOGGING (structured) instead of Celery's own plain-text set-up."""
    from django.conf import settings

    if not logging.getLogger().handlers:  # Django already configured it in this process otherwise
        logging.config.dictConfig(settings.LOGGING)
