"""A node's access to the agent broker: one Redis ACL user per node, limited to its own keys.

Like its API token, a node's broker user is the node's credential, so it lives with the node: deleting or
banning a node takes it away from here, without this app calling the apps built on top of it. What is sent on
a node's queue is dispatch's (`dispatch.queues`).
"""

import logging
import secrets
from urllib.parse import urlparse, urlunparse

import redis
from django.conf import settings
from django.db import transaction

from marketplace.nodes import conf

log = logging.getLogger("nodes")
_client: redis.Redis | None = None


def agent_redis() -> redis.Redis:
    global _client  # noqa: PLW0603 - one connection pool per process
    if _client is None:
        _client = redis.Redis.from_url(settings.AGENT_BROKER_URL)
    return _client


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
                log.error("event=broker_revoke_failed", extra={"node_id": node_id, "error": str(exc)})

    transaction.on_commit(revoke)
