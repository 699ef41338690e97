from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.http import Http404

from marketplace.disputes.models import Dispute
from marketplace.jobs.conf import dispute_window
from marketplace.jobs.models import Frame
from marketplace.jobs.states import FrameState
from marketplace.ledger.models import Account, Posting
from marketplace.ledger.selectors import posted_to
from marketplace.payments.models import ConnectAccount, EarningMaturation, Payout, TopUp


def frames_due_to_mature(*, cutoff: datetime) -> QuerySet[Frame]:
    """Settled frames past the dispute window whose pay is still pending and not frozen, oldest first (free
    ones too: maturation finds nothing to release and is done with them). Reads the partial index
    `frame_pay_pending`: what it costs grows with the frames owed, not with the history."""
    return (
        Frame.objects.filter(
            state=FrameState.SETTLED, settled_at__lte=cutoff, pay_matured_at__isnull=True, node__isnull=False
        )
        .exclude(Exists(Dispute.objects.filter(frame_id=OuterRef("pk"), state=Dispute.State.OPEN)))
        .order_by("settled_at", "pk")
    )


def topup_of(*, user, ref) -> TopUp:
    """The user's own top-up; 404 for anyone else's, so refs reveal nothing."""
    topup = TopUp.objects.filter(ref=ref, user=user).first()
    if topup is None:
        raise Http404("no such top-up")
    return topup


def topups_of(*, user, limit: int = 20) -> QuerySet[TopUp]:
    return TopUp.objects.filter(user=user).exclude(session_id=None).order_by("-created_at")[:limit]


def wallet_debt_micro(*, user) -> int:
    """Tokens that refunds or card disputes took back but the wallet no longer held."""
    return TopUp.objects.filter(user=user).aggregate(s=Coalesce(Sum("unrecovered_micro"), 0))["s"]


def wallet_frozen(*, user) -> bool:
    """An account that owes tokens after a refund or card dispute: it should not start new work."""
    return wallet_debt_micro(user=user) > 0


def connect_account_of(*, user) -> ConnectAccount | None:
    return ConnectAccount.objects.filter(user=user).first()


def payouts_of(*, user, limit: int = 50) -> QuerySet[Payout]:
    return Payout.objects.filter(user=user).order_by("-created_at")[:limit]


@dataclass(frozen=True)
class HistoryRow:
    posting: Posting
    job_id: int | None
    dispute_id: int | None


def _ref_id(text: str, prefix: str) -> int | None:
    if not text.startswith(prefix):
        return None
    head = text[len(prefix) :].split(":", 1)[0]
    return int(head) if head.isdigit() else None


def history_rows(postings) -> list[HistoryRow]:
    """Ledger postings with the job (escrow account `job:<id>`) or dispute (`dispute:<id>:…`) they belong to."""
    return [
        HistoryRow(p, _ref_id(p.account.ref, "job:"), _ref_id(p.transaction.idempotency_key, "dispute:"))
        for p in postings
    ]


@dataclass(frozen=True)
class FrameEarning:
    frame: Frame
    share_micro: int
    matures_at: datetime
    matured: bool
    disputed: bool


def provider_frame_earnings(*, provider, limit: int = 100) -> list[FrameEarning]:
    """The provider's settled frames: their share of the price and whether it is still pending."""
    frames = (
        Frame.objects.filter(state=FrameState.SETTLED, node__owner=provider)
        .select_related("job")
        .annotate(
            matured=Exists(EarningMaturation.objects.filter(frame_id=OuterRef("pk"))),
            disputed=Exists(Dispute.objects.filter(frame_id=OuterRef("pk"), state=Dispute.State.OPEN)),
        )
        .order_by("-settled_at")[:limit]
    )
    window = dispute_window()
    shares = posted_to(kind=Account.Kind.PROVIDER_PENDING, owner=provider, keys=[f.settlement_key for f in frames])
    return [
        FrameEarning(
            frame=f,
            share_micro=shares.get(f.settlement_key, 0),
            matures_at=f.settled_at + window,
            matured=f.matured,
            disputed=f.disputed,
        )
        for f in frames
    ]


@dataclass(frozen=True)
class NodeEarningRate:
    node_id: int
    node_name: str
    frames: int
    render_seconds: float
    earned_micro: int  # the provider's share of those frames, as the settlements posted it

    @property
    def per_hour_micro(self) -> int | None:
        """Earned per hour of the node's render time (what its agent measured per settled frame)."""
        if not self.render_seconds:
            return None
        return int(self.earned_micro * 3600 / self.render_seconds)


def provider_node_rates(*, provider) -> list[NodeEarningRate]:
    """Per node of the provider: settled frames, their render time and the provider's share of their price."""
    frames = list(
        Frame.objects.filter(state=FrameState.SETTLED, node__owner=provider).values_list(
            "pk", "settle_count", "node_id", "node__name", "render_seconds"
        )
    )
    keys = {pk: f"settle:frame:{pk}" + (f":{n}" if n > 1 else "") for pk, n, *_ in frames}
    shares = posted_to(kind=Account.Kind.PROVIDER_PENDING, owner=provider, keys=list(keys.values()))
    totals: dict[int, list] = {}
    for pk, _, node_id, name, seconds in frames:
        row = totals.setdefault(node_id, [name, 0, 0.0, 0])
        row[1] += 1
        row[2] += seconds or 0.0
        row[3] += shares.get(keys[pk], 0)
    return [
        NodeEarningRate(
            node_id=node_id, node_name=name, frames=n, render_seconds=round(seconds, 3), earned_micro=earned
        )
        for node_id, (name, n, seconds, earned) in sorted(totals.items(), key=lambda kv: kv[1][0])
    ]


@dataclass(frozen=True)
class ImageEarning:
    """One delivered image: a frame, or every tile of a still the provider's nodes rendered, summed."""

    job_id: int
    number: int
    tiles: int  # 0: an untiled frame
    share_micro: int
    settled_at: datetime  # the latest of its tiles
    matures_at: datetime  # the latest of its tiles
    matured: bool  # all of it is available
    disputed: bool  # some of it is under dispute


def earnings_by_image(earnings: list[FrameEarning]) -> list[ImageEarning]:
    """`provider_frame_earnings` with the tiles of one still as one row (in the order of their latest tile)."""
    groups: dict[tuple[int, int, bool], list[FrameEarning]] = {}
    for e in earnings:
        tiled = e.frame.tile_x is not None
        groups.setdefault((e.frame.job_id, e.frame.number, tiled) if tiled else (e.frame.pk, -1, False), []).append(e)
    return [
        ImageEarning(
            job_id=g[0].frame.job_id,
            number=g[0].frame.number,
            tiles=len(g) if g[0].frame.tile_x is not None else 0,
            share_micro=sum(e.share_micro for e in g),
            settled_at=max(e.frame.settled_at for e in g),
            matures_at=max(e.matures_at for e in g),
            matured=all(e.matured for e in g),
            disputed=any(e.disputed for e in g),
        )
        for g in groups.values()
    ]
