import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from marketplace.nodes import conf
from marketplace.nodes.models import HeartbeatPace, WorkerNode


def nodes_of(*, owner) -> QuerySet[WorkerNode]:
    return WorkerNode.objects.filter(owner=owner).select_related("current_frame__job", "trust").order_by("name")


def available_nodes(now=None, *, finishing_lease_id: int | None = None) -> QuerySet[WorkerNode]:
    """The nodes that can take work now: the one rule for the matcher (dispatch leases frames and crops only to
    these) and for quotes (their benchmark scores are the market's idle capacity).

    Idle (its derived status), heard from within `silence_seconds` with its agent online, not paused by its
    owner, not banned, with at least one Blender runtime, and holding no active lease. `finishing_lease_id`: a
    lease whose render is done and whose result is being uploaded; its node counts as idle if that is the only
    lease it holds (the agent's next lease, taken ahead: dispatch.services.lease_next)."""
    # The stored status is derived (services.node_status_sync); the facts are checked again here so a node is
    # never handed a second lease or counted while silent, whatever a concurrent write left behind, and so a
    # node killed without a goodbye stops counting as soon as it is due, not at the reaper's next round.
    statuses = [WorkerNode.Status.IDLE]
    others = active_leases()
    if finishing_lease_id is not None:
        statuses.append(WorkerNode.Status.BUSY)  # busy with that lease alone: the Exists below checks it
        others = others.exclude(pk=finishing_lease_id)
    return (
        WorkerNode.objects.filter(status__in=statuses, paused_by_owner=False, agent_state=WorkerNode.AgentState.ONLINE)
        .exclude(node_silent_q(now))
        .exclude(node_banned_q())
        .exclude(blender_series="")
        .exclude(Exists(others))
    )


def online_nodes(now=None) -> QuerySet[WorkerNode]:
    """Nodes heard from within `silence_seconds` with their agent online, and not banned: idle, busy or paused."""
    return WorkerNode.objects.exclude(node_silent_q(now)).exclude(node_banned_q())


def idle_capacity() -> list[float]:
    """Benchmark scores (samples/s) of the available nodes."""
    return list(available_nodes().values_list("bench_score", flat=True))


def untrusted_nodes_of(*, owner) -> QuerySet[WorkerNode]:
    """The owner's nodes that have not earned trust yet (fewer than TRUSTED_AFTER checks passed in a row)."""
    return WorkerNode.objects.filter(owner=owner).filter(
        Q(trust__isnull=True) | Q(trust__consecutive_passes__lt=conf.TRUSTED_AFTER)
    )


def _related(name: str):
    # Leases (dispatch) and trust (verification) point at nodes; reading them through the relation keeps this
    # app free of imports from the apps built on top of it.
    return WorkerNode._meta.get_field(name).related_model


def active_leases():
    """Active leases of the outer node (for `Exists`/`Subquery` against WorkerNode)."""
    return _related("leases").objects.filter(node=OuterRef("pk"), state="active")


def node_banned_q() -> Q:
    """Banned nodes: the one place a ban is read. A ban is the provider's (failed checks ban the account,
    verification.policy), so a node is banned when its owner's account is banned or deactivated; an admin may
    also ban one node (`WorkerNode.banned_at`)."""
    owner_gone = get_user_model().objects.filter(
        Q(is_active=False) | Q(banned_at__isnull=False), pk=OuterRef("owner_id")
    )
    return Q(banned_at__isnull=False) | Q(Exists(owner_gone))


def node_is_banned(*, node_id: int) -> bool:
    return WorkerNode.objects.filter(node_banned_q(), pk=node_id).exists()


@dataclass(frozen=True)
class Pace:
    seconds: int  # what agents are told now
    longest: int  # the longest pace an agent may still be following: the silence and lease windows' measure

    @classmethod
    def stored(cls, seconds: int, longest: int, longest_until: datetime, now: datetime) -> "Pace":
        """The pace a `HeartbeatPace` row holds at `now`: its longest is in force until `longest_until`."""
        return cls(seconds, max(seconds, longest) if longest_until > now else seconds)


# Each process reads the pace at most this often: it changes every 30 s at most, and a stale read is safe for this
# long (a shorter pace than the one in force only brings beats sooner; the longest is kept well past this).
PACE_CACHE_SECONDS = 5.0
_pace_read: list = []  # [(monotonic time of the read, Pace)]


def heartbeat_pace() -> Pace:
    """The heartbeat pace (`HeartbeatPace`; the shortest, HEARTBEAT_SECONDS, until the first update)."""
    if _pace_read and time.monotonic() - _pace_read[0][0] < PACE_CACHE_SECONDS:
        return _pace_read[0][1]
    row = HeartbeatPace.objects.values_list("seconds", "longest", "longest_until").first()
    if row is None:
        pace = Pace(conf.HEARTBEAT_SECONDS, conf.HEARTBEAT_SECONDS)
    else:
        pace = Pace.stored(*row, now=timezone.now())
    pace_remember(pace)
    return pace


def pace_remember(pace: Pace | None) -> None:
    """Keep `pace` as this process's read (the update that wrote it); None forgets it (tests)."""
    _pace_read[:] = [(time.monotonic(), pace)] if pace is not None else []


def beats_window(at_least: int) -> int:
    """SILENT_AFTER_BEATS beats at the longest pace in force, or `at_least` seconds when that is longer: how long a
    node may go unheard, and a lease last past its node's latest beat (`dispatch.heartbeats.lease_seconds`)."""
    return max(at_least, conf.SILENT_AFTER_BEATS * heartbeat_pace().longest)


def silence_seconds() -> int:
    """How long a node may go unheard before it is silent (`beats_window`, OFFLINE_AFTER_SECONDS at least)."""
    return beats_window(conf.OFFLINE_AFTER_SECONDS)


def silent_cutoff(now=None) -> datetime:
    """A node last heard from before this is silent."""
    return (now or timezone.now()) - timedelta(seconds=silence_seconds())


def node_silent_q(now=None) -> Q:
    """Nodes not heard from within `silence_seconds`, or whose agent said goodbye."""
    return (
        Q(last_heartbeat__isnull=True)
        | Q(last_heartbeat__lt=silent_cutoff(now))
        | Q(agent_state=WorkerNode.AgentState.OFFLINE)
    )
