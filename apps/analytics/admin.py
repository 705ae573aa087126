from django.contrib import admin

from apps.analytics.models import Event, HourlyRollup


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "occurred_at")
    list_filter = ("name",)
    date_hierarchy = "occurred_at"


@admin.register(HourlyRollup)
class HourlyRollupAdmin(admin.ModelAdmin):
    list_display = ("hour", "name", "count")
    list_filter = ("name",)
    date_hierarchy = "hour"
