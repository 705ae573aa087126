"""URL wiring."""

from django.contrib import admin
from django.urls import include, path

from apps.billing.webhooks import billing_webhook
from workers.ops.console import jobs_console
from workers.ops.health import healthz, readyz
from workers.ops.prometheus import metrics

urlpatterns = [
    # "Background jobs" opens on the operations console (before the admin's own app index).
    path("admin/workers/", admin.site.admin_view(jobs_console), name="jobs-console"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("webhooks/billing/", billing_webhook, name="billing-webhook"),
    path("api/", include("apps.analytics.urls")),
]
