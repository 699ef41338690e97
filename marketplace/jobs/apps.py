from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.jobs"
    label = "jobs"

    def ready(self) -> None:
        from marketplace.jobs import events

        # A frame that settles or fails may be the job's last open one: finish the job (jobs.job_check).
        events.subscribe(events.FRAME_SETTLED, "jobs.job_check")
        events.subscribe(events.FRAME_FAILED, "jobs.job_check")
