"""Internal Celery tasks of dispatch. They take ids, are idempotent, and call one service each."""

from celery import shared_task

from marketplace.dispatch import services


@shared_task(name="dispatch.match", acks_late=True, ignore_result=True)
def match_frames() -> int:
    return services.match_frames()


@shared_task(name="dispatch.reap", acks_late=True, ignore_result=True)
def reap_leases() -> int:
    reaped = services.leases_reap()
    services.rendered_frames_resume()
    services.match_frames()
    return reaped


@shared_task(name="dispatch.frame_rendered", acks_late=True, ignore_result=True)
def frame_rendered(frame_id: int) -> None:
    services.frame_rendered(frame_id=frame_id)


@shared_task(name="dispatch.job_check", acks_late=True, ignore_result=True)
def job_check(job_id: int) -> None:
    from marketplace.jobs.services import job_finish_if_complete

    job_finish_if_complete(job_id=job_id)
