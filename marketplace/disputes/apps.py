from django.apps import AppConfig


class DisputesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.disputes"
    label = "disputes"

    def ready(self) -> None:
        from marketplace.disputes import selectors
        from marketplace.jobs import extensions

        extensions.page_part_register(selectors.job_page_part)  # the job page's "Dispute" links
