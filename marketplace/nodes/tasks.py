"""Internal Celery tasks of nodes. They take ids, are idempotent, and call one service each."""

from celery import shared_task

from marketplace.nodes import services


@shared_task(name="nodes.heartbeat_pace", acks_late=True, ignore_result=True)
def heartbeat_pace() -> int:
    return services.heartbeat_pace_update().seconds
