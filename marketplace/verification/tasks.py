"""Internal Celery tasks of verification. They take ids, are idempotent, and call one service each."""

from celery import shared_task

from marketplace.celery import delay_once, pending_clear
from marketplace.dispatch import conf as dispatch_conf
from marketplace.jobs import events
from marketplace.verification import batch, conf, services


@shared_task(name="verification.frame_rendered", acks_late=True, ignore_result=True)
def frame_rendered(frame_id: int | None = None) -> None:
    """Subscribed to frame_rendered (jobs.events), coalesced: thumbnails (dispatch), then each frame checked or
    settled, this one and up to DISPATCH_RENDERED_BATCH others waiting for the same step, in one batch. A full
    batch asks for another run, since more may be waiting."""
    pending_clear("verification.frame_rendered")
    own = [frame_id] if frame_id is not None else []
    waiting = batch.rendered_waiting(limit=dispatch_conf.RENDERED_BATCH, besides=own)
    batch.rendered_frames_process(frame_ids=own, waiting=waiting)
    if len(waiting) == dispatch_conf.RENDERED_BATCH:
        delay_once("verification.frame_rendered", ttl_s=events.COALESCED_TTL_SECONDS)


@shared_task(name="verification.crop_reported", acks_late=True, ignore_result=True)
def crop_reported(lease_id: int) -> None:
    services.crop_reported(lease_id=lease_id)


# A platform render can fail for passing reasons (worker restart, memory): retry a few times; the sweep
# (`verification.resume`) enqueues it again later if all retries fail.
@shared_task(
    name="verification.platform_crop",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(Exception,),
    max_retries=3,
    retry_backoff=10,
)
def platform_crop(crop_check_id: int) -> None:
    services.platform_crop(crop_check_id=crop_check_id)


@shared_task(name="verification.samples_prepare", acks_late=True, ignore_result=True)
def samples_prepare() -> None:
    """Asked for after every round of render leases, coalesced: the crops of the sampled ones. A full batch asks
    for another run."""
    pending_clear("verification.samples_prepare")
    if services.samples_prepare() == conf.SAMPLES_BATCH:
        delay_once("verification.samples_prepare", ttl_s=events.COALESCED_TTL_SECONDS)


# Best effort, never retried: a crop without its reference is rendered by its platform_crop after the report.
@shared_task(name="verification.references_render", acks_late=True, ignore_result=True)
def references_render(lease_id: int) -> None:
    services.references_render(lease_id=lease_id)


@shared_task(name="verification.platform_prewarm", acks_late=True, ignore_result=True)
def platform_prewarm(frame_ids: list[int] | None = None) -> None:
    """Subscribed to frames_queued, coalesced: best effort (a lost or failed one costs the first crop a load)."""
    pending_clear("verification.platform_prewarm")
    services.platform_prewarm(frame_ids=frame_ids or [])


@shared_task(name="verification.canary_offers", acks_late=True, ignore_result=True)
def canary_offers(node_id: int | None = None) -> int:
    """Periodic, and asked for (coalesced) when canaries open or return to the pool; for one node (`node_id`) when
    it says hello."""
    if node_id is not None:
        return services.canary_offers_renew(node_id=node_id)
    pending_clear("verification.canary_offers")
    return services.canary_offers_renew()


@shared_task(name="verification.resume", acks_late=True, ignore_result=True)
def resume_checks() -> int:
    return services.checks_resume()
