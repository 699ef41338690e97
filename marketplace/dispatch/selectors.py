"""Why a job's queued frames are waiting, and what happens next (issue 12).

Read by the job page and the jobs API. The checks mirror the matcher (`nodes.selectors.available_nodes`,
`batch._fitting_jobs`, `batch._pool_sql` and `batch._kept_off_pairs`): a node online that cannot take the job's
frames is sorted into the first reason that keeps it off, and the artist is told the reason that keeps the most
nodes off, with its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict, Unpack

from django.db.models import Count, Min
from django.utils import timezone

from marketplace.dispatch import conf
from marketplace.dispatch.models import JobNodeBlock
from marketplace.jobs.models import Job
from marketplace.jobs.states import JOB_LIVE, FrameState
from marketplace.nodes.models import WorkerNode
from marketplace.nodes.selectors import online_nodes

S = WorkerNode.Status


def _tokens(micro: int) -> str:
    return f"{micro / 1_000_000:,.2f}"


@dataclass(frozen=True)
class Waiting:
    """Queued frames of a job that no node is rendering: why, and what happens next."""

    code: str  # no_nodes | all_busy | all_paused | handing_out | vram | price | blocked | blender
    reason: str
    next: str
    frames: int  # frames waiting
    since: datetime | None  # the longest-waiting frame has waited since then
    # Actions offered to the artist once frames wait past UNPLACED_NOTICE_SECONDS: "allow_refused_nodes"
    # (`jobs.services.job_allow_refused_nodes`), "requote" (cancel, then quote again at another price or size).
    choices: list[str] = field(default_factory=list)

    @property
    def waited_s(self) -> float:
        return (timezone.now() - self.since).total_seconds() if self.since else 0.0

    def as_dict(self) -> dict:
        return {
            "code": self.code,
            "reason": self.reason,
            "next": self.next,
            "frames": self.frames,
            "since": self.since.isoformat() if self.since else None,
            "choices": self.choices,
        }


class _Queued(TypedDict):
    """The Waiting fields every reason shares."""

    frames: int
    since: datetime | None


def _gb(mb: int) -> str:
    return f"{mb / 1024:.0f} GB" if mb >= 1024 else f"{mb} MB"


def _why_not(node: WorkerNode, *, job: Job, price: int, blocked: set[int]) -> str | None:
    """The first fact that keeps this online node off the job's frames, None if it could take them."""
    if job.blender_series not in node.series:
        return "blender"
    if node.pk in blocked:
        return "blocked"
    need = (job.quote or {}).get("vram_mb")
    if need and node.device_type != WorkerNode.Device.CPU and node.vram_mb and node.vram_mb < int(need):
        return "vram"
    if price < node.min_price_per_frame:
        return "price"
    return None


def job_waiting(*, job: Job) -> Waiting | None:
    """None when nothing of the job waits for a node (all frames leased, done, or the job is not running)."""
    if job.state not in JOB_LIVE:
        return None
    # One read: the frames leave the queue meanwhile (leased, cancelled), and separate reads saw a count of
    # queued frames and then none to take the cheapest price of (a 500 on the job's page).
    queue = job.frames.filter(state=FrameState.QUEUED).aggregate(
        frames=Count("pk"), since=Min("updated_at"), price=Min("price")
    )
    frames, since, price = queue["frames"], queue["since"], queue["price"]
    if not frames:
        return None
    online = list(online_nodes())
    kw: _Queued = {"frames": frames, "since": since}
    if not online:
        return Waiting(
            "no_nodes",
            "waiting for a render node to come online (none is online now)",
            "your frames start as soon as a node connects; the escrow stays held and nothing is charged "
            "until a frame is verified",
            **kw,
        )
    blocked = set(
        JobNodeBlock.objects.filter(job=job, failures__gte=conf.NODE_FAILURES_PER_JOB).values_list("node_id", flat=True)
    )
    reasons: dict[str, list[WorkerNode]] = {}
    fitting: list[WorkerNode] = []
    for node in online:
        why = _why_not(node, job=job, price=price, blocked=blocked)
        (reasons.setdefault(why, []) if why else fitting).append(node)
    if fitting:
        return _waiting_for_fitting(fitting, **kw)
    code, nodes = max(reasons.items(), key=lambda item: len(item[1]))
    n = len(online)
    others = f" ({n} node{'s' if n != 1 else ''} online, none fits)"
    waited = (timezone.now() - since).total_seconds() if since else 0
    late = waited >= conf.UNPLACED_NOTICE_SECONDS
    if code == "vram":
        need = int(job.quote["vram_mb"])
        most = max(node.vram_mb for node in nodes)
        return Waiting(
            "vram",
            f"waiting for a node with ≥ {_gb(need)} VRAM (the online ones have at most {_gb(most)}){others}",
            "the frames start when a node with enough GPU memory comes online",
            choices=["requote"] if late else [],
            **kw,
        )
    if code == "price":
        floor = min(node.min_price_per_frame for node in nodes)
        return Waiting(
            "price",
            f"your price per frame ({_tokens(price)} tokens) is below every online node's floor "
            f"(the lowest asks {_tokens(floor)}){others}",
            "the frames start when a node with a lower floor comes online; a new quote at a higher price "
            "would start them now",
            choices=["requote"] if late else [],
            **kw,
        )
    if code == "blocked":
        choices = ["allow_refused_nodes"] if late else []
        return Waiting(
            "blocked",
            f"waiting for a node other than the one(s) whose results on this job were refused (none online){others}",
            "the frames start when another node comes online"
            + ("; or you may let the refused node(s) render them again" if choices else ""),
            choices=choices,
            **kw,
        )
    return Waiting(  # code == "blender"
        "blender",
        f"waiting for a node with Blender {job.blender_series}, the series your scene "
        f"renders with (checks re-render in the same series){others}",
        "the frames start when such a node comes online",
        **kw,
    )


def _waiting_for_fitting(fitting: list[WorkerNode], **kw: Unpack[_Queued]) -> Waiting:
    by_status: dict[str, int] = {}
    for node in fitting:
        by_status[node.status] = by_status.get(node.status, 0) + 1
    n = len(fitting)
    if by_status.get(S.IDLE):
        return Waiting(
            "handing_out",
            f"{by_status[S.IDLE]} idle node(s) fit: a frame is being handed out",
            "rendering starts within seconds",
            **kw,
        )
    if by_status.get(S.BUSY):
        return Waiting(
            "all_busy",
            f"all {n} node(s) that fit are busy rendering",
            "your frames start as they finish (higher priority first, then the artist with the fewest "
            "frames rendering)",
            **kw,
        )
    return Waiting(
        "all_paused",
        f"the {n} node(s) that fit are paused by their owners or schedules",
        "your frames start when one resumes",
        **kw,
    )


def waiting_too_long(*, waiting: Waiting | None) -> bool:
    """Whether the page should call the wait out as unusual (past `UNPLACED_NOTICE_SECONDS`)."""
    return (
        waiting is not None
        and waiting.code not in ("handing_out", "all_busy")
        and waiting.waited_s >= conf.UNPLACED_NOTICE_SECONDS
    )


def job_page_part(*, job: Job, frame_ids: list[int]) -> dict:
    """The job page's waiting notice (registered in jobs.extensions)."""
    waiting = job_waiting(job=job)
    return {"waiting": waiting, "waiting_long": waiting_too_long(waiting=waiting)}


def job_api_part(*, job: Job) -> dict:
    """The job's API detail: why its frames wait (registered in jobs.extensions)."""
    waiting = job_waiting(job=job)
    return {"waiting": waiting.as_dict() if waiting else None}
