"""Internal Celery tasks of jobs. They take ids, are idempotent, and call one service each."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from marketplace.jobs import conf, selectors, services
from marketplace.jobs.assembly import AssemblyError

logger = logging.getLogger(__name__)


@shared_task(name="jobs.job_check", acks_late=True, ignore_result=True)
def job_check(job_id: int, frame_id: int | None = None) -> None:
    """Subscribed to frame_settled and frame_failed (jobs.events): finish the job once no frame is open."""
    services.job_finish_if_complete(job_id=job_id)


@shared_task(name="jobs.frame_assemble", bind=True, acks_late=True, ignore_result=True, max_retries=5)
def frame_assemble(self, job_id: int, number: int) -> None:
    """Stitch a tiled still once its last tile is settled (see `services.frame_assemble`)."""
    try:
        services.frame_assemble(job_id=job_id, number=number)
    except AssemblyError:
        # The tiles passed the upload checks, so this is a bug to look at, not something a retry fixes.
        logger.exception(
            "event=frame_assembly_failed: the frame cannot be assembled", extra={"job_id": job_id, "number": number}
        )
    except OSError as exc:  # storage unreachable for a moment
        raise self.retry(exc=exc, countdown=30 * (self.request.retries + 1)) from exc


@shared_task(name="jobs.assemble_missing", acks_late=True, ignore_result=True)
def assemble_missing() -> int:
    """Beat safety net: assemble the recently finished stills whose `jobs.frame_assemble` message was lost."""
    since = timezone.now() - timedelta(hours=conf.ASSEMBLY_SWEEP_HOURS)
    missing = selectors.stills_unassembled(settled_since=since)
    for job_id, number in missing:
        frame_assemble.delay(job_id, number)
    return len(missing)
