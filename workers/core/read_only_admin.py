"""Admin pages of rows that only the platform writes (the outbox, alerts, redrives, the
audit trail): a person may read them and act through their controls, never edit or delete
a row (a deleted outbox row is a lost job; retention removes old rows)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # any model
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
