from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from marketplace.nodes import conf
from marketplace.nodes.models import WorkerNode
from marketplace.verification import policy


def nodes_of(*, owner) -> QuerySet[WorkerNode]:
    return WorkerNode.objects.filter(owner=owner).select_related("current_frame__job", "trust").order_by("name")


def idle_capacity() -> list[float]:
    """Benchmark scores (samples/s) of the nodes that are idle right now."""
    # The status is derived from the facts (services.node_status_sync); silence is re-checked here because it
    # changes with time, not with a row, so a node killed without a goodbye stops counting as soon as it is due.
    return list(
        WorkerNode.objects.filter(status=WorkerNode.Status.IDLE)
        .exclude(node_silent_q())
        .values_list("bench_score", flat=True)
    )


def untrusted_nodes_of(*, owner) -> QuerySet[WorkerNode]:
    """The owner's nodes that have not earned trust yet (fewer than TRUSTED_AFTER checks passed in a row)."""
    return WorkerNode.objects.filter(owner=owner).filter(
        Q(trust__isnull=True) | Q(trust__consecutive_passes__lt=policy.TRUSTED_AFTER)
    )


def _related(name: str):
    # Leases (dispatch) and trust (verification) point at nodes; reading them through the relation keeps this
    # app free of imports from the apps built on top of it.
    return WorkerNode._meta.get_field(name).related_model


def active_leases():
    """Active leases of the outer node (for `Exists`/`Subquery` against WorkerNode)."""
    return _related("leases").objects.filter(node=OuterRef("pk"), state="active")


def node_banned_q() -> Q:
    """Banned nodes: by an admin, by failed checks (trust), or whose owner's account is banned (a ban is the
    provider's, verification.policy) or deactivated."""
    trust_banned = _related("trust").objects.filter(node=OuterRef("pk"), banned_at__isnull=False)
    owner_gone = get_user_model().objects.filter(
        Q(is_active=False) | Q(banned_at__isnull=False), pk=OuterRef("owner_id")
    )
    return Q(banned_at__isnull=False) | Q(Exists(trust_banned)) | Q(Exists(owner_gone))


def node_silent_q(now=None) -> Q:
    """Nodes not heard from within OFFLINE_AFTER_SECONDS, or whose agent said goodbye."""
    cutoff = (now or timezone.now()) - timedelta(seconds=conf.OFFLINE_AFTER_SECONDS)
    return Q(last_heartbeat__isnull=True) | Q(last_heartbeat__lt=cutoff) | Q(agent_state=WorkerNode.AgentState.OFFLINE)
