from django.apps import AppConfig


class ApiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.api"
    label = "api"

    def ready(self) -> None:
        from marketplace.api import schema  # noqa: F401 - registers the OpenAPI auth extensions
