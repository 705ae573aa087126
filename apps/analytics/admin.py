from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.analytics.models import Event, ExportJob, HourlyRollup
from apps.analytics.permissions import may_export_events
from apps.analytics.services import export_start
from apps.analytics.validation import ExportRangeRejected, check_export_range
from workers.core.progress_bar import progress_bar


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "occurred_at")
    list_filter = ("name",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # COUNT(*) over millions of rows on every page is slow


@admin.register(HourlyRollup)
class HourlyRollupAdmin(admin.ModelAdmin):
    list_display = ("hour", "name", "count")
    list_filter = ("name",)
    date_hierarchy = "hour"


class ExportJobForm(forms.ModelForm):
    """The range the API accepts, no other: a job outside it could never finish."""

    class Meta:
        model = ExportJob
        fields = ("date_from", "date_to")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("date_from") and cleaned.get("date_to"):
            try:
                check_export_range(date_from=cleaned["date_from"], date_to=cleaned["date_to"])
            except ExportRangeRejected as exc:
                raise forms.ValidationError(str(exc)) from None
        return cleaned


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    """An operator adds an export here; it runs as soon as it is saved. Adding one needs
    the permission to view events too, as through the API: the file holds them all."""

    form = ExportJobForm

    list_display = ("id", "owner", "date_from", "date_to", "status", "progress_shown",
                    "row_count", "created_at", "finished_at")
    list_filter = ("status",)
    fields = ("date_from", "date_to", "owner", "status", "progress_shown", "row_count",
              "download", "error", "created_at", "started_at", "finished_at")
    readonly_fields = ("owner", "status", "progress_shown", "row_count", "download", "error",
                       "created_at", "started_at", "finished_at")

    @admin.display(description="progress", ordering="progress")
    def progress_shown(self, job: ExportJob) -> str:
        return progress_bar(job.progress)

    @admin.display(description="file")
    def download(self, job: ExportJob) -> str:
        """The download view, not the file's media URL: media is not served in production,
        and the view checks who asks."""
        if job.status != ExportJob.Status.DONE or not job.file:
            return "-"
        return format_html('<a href="{}">{}</a>',
                           reverse("analytics-export-download", args=[job.pk]),
                           (job.file.name or "").rpartition("/")[2])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and may_export_events(request.user)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
        if not change:
            export_start(export_id=obj.pk)
