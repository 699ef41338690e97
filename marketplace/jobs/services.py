"""Job and frame state changes that move money. (Lead's interim version: settlement and job completion.)"""
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from marketplace.jobs.models import Frame, Job
from marketplace.jobs.states import FRAME_OPEN, FRAME_TRANSITIONS, JOB_TRANSITIONS, FrameState, JobState, transition
from marketplace.ledger.services import refund_escrow, release_escrow
from marketplace.nodes.models import WorkerNode


@transaction.atomic
def frame_settle(*, frame_id: int, node_id: int) -> bool:
    """Pay a rendered (and, if checked, verified) frame from escrow, once. False when already settled."""
    frame = Frame.objects.select_for_update(of=("self",)).select_related("job__owner").get(pk=frame_id)
    if frame.state not in (FrameState.RENDERED, FrameState.VERIFYING):
        return False
    if not transition(Frame, pk=frame.pk, current=frame.state, target=FrameState.SETTLED, table=FRAME_TRANSITIONS,
                      node_id=node_id, settled_at=timezone.now()):
        return False
    provider = WorkerNode.objects.select_related("owner").get(pk=node_id).owner
    job = frame.job
    if frame.price:
        release_escrow(artist=job.owner, job_ref=job.escrow_ref, provider=provider, amount=frame.price,
                       key=f"settle:frame:{frame.pk}", memo=f"frame {frame.number} of job {job.pk} rendered")
    transaction.on_commit(lambda: job_finish_if_complete(job_id=job.pk))
    return True


@transaction.atomic
def job_finish_if_complete(*, job_id: int) -> bool:
    """When no frame is open any more: the job is DONE (FAILED if none was rendered); leftover escrow returns."""
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.state not in (JobState.QUEUED, JobState.RUNNING) or job.frames.filter(state__in=FRAME_OPEN).exists():
        return False
    done = job.frames.filter(Q(state=FrameState.SETTLED)).exists()
    target = JobState.DONE if done else JobState.FAILED
    transition(Job, pk=job.pk, current=job.state, target=target, table=JOB_TRANSITIONS, finished_at=timezone.now())
    refund_escrow(artist=job.owner, job_ref=job.escrow_ref, key=f"refund:job:{job.pk}:final")
    return True
