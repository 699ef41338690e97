from django.db.models import Q, QuerySet

from marketplace.nodes.models import WorkerNode
from marketplace.verification import policy


def nodes_of(*, owner) -> QuerySet[WorkerNode]:
    return (WorkerNode.objects.filter(owner=owner).select_related("current_frame__job", "trust")
            .order_by("name"))


def idle_capacity() -> list[float]:
    """Benchmark scores (samples/s) of the nodes that are idle right now."""
    return list(WorkerNode.objects.filter(status=WorkerNode.Status.IDLE, banned_at=None)
                .values_list("bench_score", flat=True))


def untrusted_nodes_of(*, owner) -> QuerySet[WorkerNode]:
    """The owner's nodes that have not earned trust yet (fewer than TRUSTED_AFTER checks passed in a row)."""
    return WorkerNode.objects.filter(owner=owner).filter(
        Q(trust__isnull=True) | Q(trust__consecutive_passes__lt=policy.TRUSTED_AFTER))
