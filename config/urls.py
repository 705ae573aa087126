"""URL wiring."""

from django.contrib import admin
from django.urls import include, path

from apps.billing.webhooks import billing_webhook
from workers.ops.health import healthz, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("webhooks/billing/", billing_webhook, name="billing-webhook"),
    path("api/", include("apps.analytics.urls")),
]
