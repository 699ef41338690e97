from django.db.models import QuerySet

from marketplace.nodes.models import WorkerNode


def nodes_of(*, owner) -> QuerySet[WorkerNode]:
    return (WorkerNode.objects.filter(owner=owner).select_related("current_frame__job", "trust")
            .order_by("name"))


def idle_capacity() -> list[float]:
    """Benchmark scores (samples/s) of the nodes that are idle right now."""
    return list(WorkerNode.objects.filter(status=WorkerNode.Status.IDLE, banned_at=None)
                .values_list("bench_score", flat=True))
