"""Internal Celery tasks of dispatch. They take ids, are idempotent, and call one service each."""

from celery import shared_task

from marketplace.dispatch import conf, heartbeats, services


@shared_task(name="dispatch.match", acks_late=True, ignore_result=True)
def match_frames() -> int:
    return services.match_run()


@shared_task(name="dispatch.frames_queued", acks_late=True, ignore_result=True)
def frames_queued(frame_ids: list[int]) -> None:
    """Subscribed to frames_queued (jobs.events): ask for matching (`dispatch.match`, its one way in)."""
    services.match_frames_soon()


@shared_task(name="dispatch.heartbeats_flush", acks_late=True, ignore_result=True)
def heartbeats_flush() -> int:
    return heartbeats.heartbeats_flush()


@shared_task(name="dispatch.reap", acks_late=True, ignore_result=True)
def reap_leases() -> int:
    reaped = services.leases_reap()
    services.rendered_frames_resume()
    services.match_frames()
    return reaped


@shared_task(name="dispatch.node_status_sweep", acks_late=True, ignore_result=True)
def node_status_sweep() -> int:
    return services.node_status_sweep()


@shared_task(name="dispatch.lease_uploads_clear", acks_late=True, ignore_result=True)
def lease_uploads_clear() -> int:
    return services.lease_uploads_clear(batches=conf.UPLOADS_CLEAR_BATCHES_PER_RUN)
