from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"

    def ready(self) -> None:
        from apps.billing.receivers import mark_event_failed
        from workers.core.signals import task_dead_lettered

        task_dead_lettered.connect(mark_event_failed, dispatch_uid="billing.event_failed")
