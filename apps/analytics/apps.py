from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "apps.analytics"

    def ready(self) -> None:
        from apps.analytics.receivers import mark_export_failed
        from workers.core.signals import task_dead_lettered

        task_dead_lettered.connect(mark_export_failed, dispatch_uid="analytics.export_failed")
