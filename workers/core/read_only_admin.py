"""Admin pages of rows that only the platform writes (the outbox, alerts, redrives, the
audit trail): a person may read them and act through their controls, never edit or delete
a row (a deleted outbox row is a lost job; retention removes old rows)."""

from collections.abc import Collection
from typing import Any

from django.contrib import admin
from django.http import HttpRequest


def lookup_reads(lookup: str, fields: Collection[str]) -> bool:
    """Whether an admin filter typed into the address bar (`?kwargs__password__startswith=a`)
    reads one of `fields`, which a page shows redacted, or is a regular expression (a bad
    one is a database error): answering "1 row" or "0" would give a hidden value away a
    character at a time."""
    field, _, rest = lookup.partition("__")
    return field in fields or rest.endswith("regex")


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # any model
    #: What its pages show redacted, which no filter in the address bar may read.
    redacted_fields: Collection[str] = ()

    def hidden_fields(self, request: HttpRequest) -> Collection[str]:
        """`redacted_fields`, for this user."""
        return self.redacted_fields

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """Refused lookups answer 400."""
        if lookup_reads(lookup, self.hidden_fields(request)):
            return False
        return super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
