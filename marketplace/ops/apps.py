import contextlib

from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "marketplace.ops"
    label = "ops"
    verbose_name = "Farm operations"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from marketplace.ops.metrics import FarmCollector

        # One collector per process; its numbers are read from the database and brokers at scrape time.
        with contextlib.suppress(ValueError):  # already registered (the app registry populated again)
            REGISTRY.register(FarmCollector())
