from django.apps import AppConfig
from django.conf import settings


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Background jobs"

    def ready(self) -> None:
        """Start Sentry in every process that loads Django: web, workers, beat, commands."""
        from workers.ops.sentry import init_sentry

        init_sentry(dsn=settings.SENTRY_DSN, environment=settings.SENTRY_ENVIRONMENT,
                    release=settings.SENTRY_RELEASE,
                    traces_sample_rate=settings.SENTRY_TRACES_SAMPLE_RATE)
