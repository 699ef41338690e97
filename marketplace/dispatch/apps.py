from django.apps import AppConfig


class DispatchConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.dispatch"
    label = "dispatch"

    def ready(self) -> None:
        from marketplace.jobs import events

        # Dispatch owns all sending: queued frames are matched to nodes, cancelled ones lose their leases.
        events.subscribe(events.FRAMES_QUEUED, "dispatch.frames_queued")
        events.subscribe(events.FRAMES_CANCELLED, "dispatch.leases_revoke")
