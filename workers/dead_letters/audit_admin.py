"""The dead-letter audit trail in the admin: every requeue, discard, edit, redrive step and
showing of a payload, as recorded; nobody may change or delete it here."""

from django.contrib import admin

from workers.core.read_only_admin import ReadOnlyAdmin
from workers.dead_letters.models import DeadLetterEvent


@admin.register(DeadLetterEvent)
class DeadLetterEventAdmin(ReadOnlyAdmin):
    """The audit trail: read-only, for everyone who may see dead letters."""

    list_display = ("at", "actor", "action", "count", "dead_letter", "fingerprint", "redrive",
                    "text")
    list_filter = ("action",)
    search_fields = ("actor", "fingerprint", "text")
    readonly_fields = ("at", "actor", "action", "dead_letter", "fingerprint", "redrive",
                       "count", "text", "detail")
    fields = readonly_fields
