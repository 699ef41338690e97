"""Agent queues: one Redis list per node on the agent broker, never the internal Celery broker.

Why not Celery/kombu here: kombu's Redis transport keeps every consumer's unacked messages in shared keys
(`unacked`, `_kombu.binding.*`), so a node would need access to other nodes' deliveries. A plain reliable
queue (LPUSH by the marketplace, BLMOVE into the node's own processing list, LREM after the report) lets
each node's Redis ACL user (`nodes.broker`) touch only `agent:node:<id>:*`. Delivery is at-least-once; the
database lease decides who owns a frame, so a duplicate or forged message changes nothing.
"""

import json

from marketplace.nodes.broker import agent_redis


def queue_key(node_id: int) -> str:
    return f"agent:node:{node_id}:queue"


def deliver(*, node_id: int, message: dict) -> None:
    agent_redis().lpush(queue_key(node_id), json.dumps(message))


def deliver_many(*, messages: list[tuple[int, dict]]) -> None:
    """Deliver (node id, message) pairs in one round trip (a batch of new leases)."""
    pipe = agent_redis().pipeline(transaction=False)
    for node_id, message in messages:
        pipe.lpush(queue_key(node_id), json.dumps(message))
    pipe.execute()  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.execute unannotated
