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


# Every task's lines carry its id, name and id arguments (marketplace.logs).
signals.task_prerun.connect(logs.task_started, weak=False)
signals.task_postrun.connect(logs.task_finished, weak=False)


@signals.setup_logging.connect(weak=False)
def keep_django_logging(**_) -> None:
    """A worker logs through settings.LOGGING (structured) instead of Celery's own plain-text set-up."""
    from django.conf import settings

    if not logging.getLogger().handlers:  # Django already configured it in this process otherwise
        logging.config.dictConfig(settings.LOGGING)
