"""Agent queues: one Redis list per node on the agent broker, never the internal Celery broker.

Why not Celery/kombu here: kombu's Redis transport keeps every consumer's unacked messages in shared keys
(`unacked`, `_kombu.binding.*`), so a node would need access to other nodes' deliveries. A plain reliable
queue (LPUSH by the marketplace, BLMOVE into the node's own processing list, LREM after the report) lets
each node's Redis ACL user touch only `agent:node:<id>:*`. Delivery is at-least-once; the database lease
decides who owns a frame, so a duplicate or forged message changes nothing.
"""

import json
import logging
import secrets
from urllib.parse import urlparse, urlunparse

import redis
from django.conf import settings
from django.db import transaction

from marketplace.dispatch import conf

log = logging.getLogger("dispatch")
_client: redis.Redis | None = None


def agent_redis() -> redis.Redis:
    global _client  # noqa: PLW0603 - one connection pool per process
    if _client is None:
        _client = redis.Redis.from_url(settings.AGENT_BROKER_URL)
    return _client


def queue_key(node_id: int) -> str:
    return f"agent:node:{node_id}:queue"


def deliver(*, node_id: int, message: dict) -> None:
    agent_redis().lpush(queue_key(node_id), json.dumps(message))


def node_broker_url(*, node_id: int) -> str:
    """A broker URL for this node with a fresh per-node password, limited to its own keys."""
    if not conf.AGENT_BROKER_ACL:
        return settings.AGENT_BROKER_URL
    user, password = f"node-{node_id}", secrets.token_urlsafe(24)
    agent_redis().execute_command(
        "ACL",
        "SETUSER",
        user,
        "reset",
        "on",
        f">{password}",
        f"~agent:node:{node_id}:*",
        "resetchannels",
        # no +client|setinfo: Redis 7.0 does not know it, and redis-py ignores its refusal
        "-@all",
        "+blmove",
        "+lmove",
        "+lrem",
        "+lrange",
        "+llen",
        "+ping",
        "+select",
    )
    parsed = urlparse(getattr(settings, "AGENT_BROKER_PUBLIC_URL", "") or settings.AGENT_BROKER_URL)
    netloc = f"{user}:{password}@{parsed.hostname}:{parsed.port or 6379}"
    return urlunparse(parsed._replace(netloc=netloc))


def node_broker_revoke(*, node_id: int) -> None:
    if conf.AGENT_BROKER_ACL:
        agent_redis().execute_command("ACL", "DELUSER", f"node-{node_id}")


def nodes_broker_revoke_on_commit(*, node_ids: list[int]) -> None:
    """After the current transaction commits, delete these nodes' broker users (a banned or deleted node keeps
    no access to the agent broker). A broker that is down is only logged: its users die with its memory, and
    `node_broker_url` is the only way to create one again."""

    def revoke() -> None:
        for node_id in node_ids:
            try:
                node_broker_revoke(node_id=node_id)
            except redis.RedisError as exc:
                log.error("event=broker_revoke_failed node=%s error=%s", node_id, exc)

    transaction.on_commit(revoke)


def deliver_many(*, messages: list[tuple[int, dict]]) -> None:
    """Deliver (node id, message) pairs in one round trip (a batch of new leases)."""
    pipe = agent_redis().pipeline(transaction=False)
    for node_id, message in messages:
        pipe.lpush(queue_key(node_id), json.dumps(message))
    pipe.execute()
