import importlib
import importlib.util

from django.apps import AppConfig, apps


class WebConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.web"
    label = "web"

    def ready(self) -> None:
        from marketplace import checks  # noqa: F401  (registers the deploy checks)

        # Register every app's Celery tasks in every process (web, worker, tests), so a task can be
        # looked up by name, and run inline when CELERY_TASK_ALWAYS_EAGER is set.
        for config in apps.get_app_configs():
            if config.name.startswith("marketplace.") and importlib.util.find_spec(f"{config.name}.tasks"):
                importlib.import_module(f"{config.name}.tasks")
