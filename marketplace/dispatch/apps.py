from django.apps import AppConfig


class DispatchConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.dispatch"
    label = "dispatch"

    def ready(self) -> None:
        from marketplace.dispatch import selectors, services
        from marketplace.jobs import events, extensions

        # Dispatch owns all sending: queued frames are matched to nodes.
        events.subscribe(events.FRAMES_QUEUED, "dispatch.frames_queued")
        # What jobs asks of dispatch: cancelled frames lose their leases; the job's pages and actions.
        extensions.leases_revoke_register(services.leases_revoke_for_frames)
        extensions.node_blocks_clear_register(services.job_node_blocks_clear)
        extensions.page_part_register(selectors.job_page_part)
        extensions.api_part_register(selectors.job_api_part)
