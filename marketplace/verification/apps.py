from django.apps import AppConfig


class VerificationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.verification"
    label = "verification"

    def ready(self) -> None:
        from marketplace.dispatch import hooks
        from marketplace.jobs import events, extensions
        from marketplace.verification import selectors, services

        # Verification decides: every rendered frame is checked (sampled, canary) or settled, in batches of the
        # frames waiting: one queued task serves a burst of reports.
        events.subscribe(events.FRAME_RENDERED, "verification.frame_rendered", coalesce=True)
        # The platform verifier loads an accepted job's scene before its first crop needs it (PLATFORM_PREWARM).
        events.subscribe(events.FRAMES_QUEUED, "verification.platform_prewarm", coalesce=True)
        # Inside dispatch's transactions: canaries replace real work; abandoned leases cost trust. Matching reads
        # what these need (the node's trust, its canary offer) with the node it locks.
        hooks.node_reads_register(services.NODE_READS)
        hooks.node_greeted_register(services.canary_node_greeted)  # a node's first canary, without waiting for beat
        hooks.frame_substitute_register(services.canary_frame_for)
        hooks.lease_abandoned_register(services.trust_lease_abandoned)
        # ... and a render lease's check is drawn when it is granted; its crops are chosen and rendered after the call.
        hooks.lease_sampler_register(services.lease_sampled, then=services.leases_granted)
        extensions.page_part_register(selectors.job_page_part)  # the job page's per-frame check status
