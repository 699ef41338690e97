import os

import pytest
import redis
from django.conf import settings
from django.db import connection

pytest_plugins = [
    "tests.fixtures.personas",
    "tests.fixtures.farm",
    "tests.fixtures.series",
    "tests.fixtures.logs",
    "tests.fixtures.storage",
]


def pytest_collection_modifyitems(config, items):
    # In CI (`make test` exports a Postgres DATABASE_URL) Postgres tests must run, never skip.
    on_postgres = os.environ.get("DATABASE_URL", "").startswith("postgres")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            if os.environ.get("CI"):
                item.add_marker(
                    pytest.mark.xfail(reason="CI must run Postgres tests via make test", strict=True, run=False)
                )
            else:
                item.add_marker(pytest.mark.skip(reason="needs Postgres: run `make test`"))


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture
def agent_queues():
    """The agent broker (real Redis), empty before and after, with a fresh connection pool."""
    from marketplace.nodes import broker

    r = redis.Redis.from_url(settings.AGENT_BROKER_URL)
    r.flushdb()
    broker._client = None  # the pool must not outlive a flushed db's ACL users
    yield r
    r.flushdb()


@pytest.fixture
def celery_queue(monkeypatch):
    """The internal broker (real Redis) with tasks sent, not run, so what is queued can be counted; its default
    queue and the coalesced tasks' pending marks (marketplace.celery.delay_once) empty before and after."""
    from marketplace.celery import app

    if not os.environ.get("TEST_REDIS_URL"):
        pytest.skip("needs the real Redis of `make test` (TEST_REDIS_URL)")
    monkeypatch.setattr(app.conf, "CELERY_TASK_ALWAYS_EAGER", False)
    broker = redis.Redis.from_url(app.conf.broker_url)

    def empty() -> None:
        broker.delete("celery", *broker.keys("task:pending:*"))

    empty()
    yield broker
    empty()


@pytest.fixture(autouse=True)
def heartbeat_pace_unread():
    """This process's cached heartbeat pace (nodes.selectors.heartbeat_pace) is another test's rolled-back row."""
    from marketplace.nodes.selectors import pace_remember

    pace_remember(None)
    yield
    pace_remember(None)


@pytest.fixture(autouse=True)
def no_gathered_heartbeats():
    """Heartbeats another test gathered (dispatch.heartbeats) are not this test's: on SQLite a rolled-back node's
    id is given again, and a flush would write the old beat to the new node."""
    from marketplace.celery import internal_redis
    from marketplace.dispatch import heartbeats

    try:
        internal_redis().delete(heartbeats.BEATS_KEY, heartbeats.FLUSHING_KEY)
    except redis.RedisError:
        pass  # no Redis here: every beat is written at once
