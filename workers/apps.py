from django.apps import AppConfig
from django.conf import settings


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Background jobs"

    def ready(self) -> None:
        """In every process that loads Django (web, workers, beat, commands): connect the
        Celery signal handlers, the alerts' receivers and the staff session limit, and
        start Sentry."""
        from workers.ops import staff_sessions
        from workers.ops.alerts import receivers as alert_receivers
        from workers.ops.sentry import init_sentry
        from workers.runtime import connect_signal_handlers

        connect_signal_handlers()
        alert_receivers.connect()
        staff_sessions.connect()
        init_sentry(dsn=settings.SENTRY_DSN, environment=settings.SENTRY_ENVIRONMENT,
                    release=settings.SENTRY_RELEASE,
                    traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE)
