from django.db.models import QuerySet

from marketplace.nodes.models import WorkerNode
from marketplace.nodes.services import node_silent_q


def nodes_of(*, owner) -> QuerySet[WorkerNode]:
    return (WorkerNode.objects.filter(owner=owner).select_related("current_frame__job", "trust")
            .order_by("name"))


def idle_capacity() -> list[float]:
    """Benchmark scores (samples/s) of the nodes that are idle right now."""
    # The status is derived from the facts (services.node_status_sync); silence is re-checked here because it
    # changes with time, not with a row, so a node killed without a goodbye stops counting as soon as it is due.
    return list(WorkerNode.objects.filter(status=WorkerNode.Status.IDLE).exclude(node_silent_q())
                .values_list("bench_score", flat=True))
