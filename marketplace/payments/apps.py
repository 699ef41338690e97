from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "marketplace.payments"
    label = "payments"

    def ready(self) -> None:
        from marketplace.jobs import extensions
        from marketplace.payments.selectors import wallet_frozen

        # A wallet that owes tokens starts no new work (jobs asks without importing payments).
        extensions.wallet_frozen_register(wallet_frozen)
