"""The dead-letter audit trail in the admin: every requeue, discard, edit, redrive step and
showing of a payload, as recorded; nobody may change or delete it here.

What someone who may search payloads searched for is itself a payload's secret (a guessed
password whose search found a row): everyone sees that such a search happened, only those
who may search payloads see its term, and only they can search the trail's texts."""

import json
from collections.abc import Collection
from typing import Any

from django.contrib import admin
from django.db.models import Case, F, JSONField, Q, QuerySet, TextField, Value, When
from django.http import HttpRequest

from workers.core.read_only_admin import ReadOnlyAdmin
from workers.dead_letters.models import DeadLetterEvent

HIDDEN_TERM = "searched for [only those who may search payloads see the term]"


@admin.register(DeadLetterEvent)
class DeadLetterEventAdmin(ReadOnlyAdmin):
    """The audit trail: read-only, for everyone who may see dead letters."""

    list_display = ("at", "actor", "action", "count", "dead_letter", "fingerprint", "redrive",
                    "shown_text")
    list_filter = ("action",)
    redacted_fields = ("text", "detail")  # a search's term is in both
    search_fields = ("actor", "fingerprint", "text")
    readonly_fields = ("at", "actor", "action", "dead_letter", "fingerprint", "redrive",
                       "count", "shown_text", "shown_detail")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetterEvent]:
        events = super().get_queryset(request)
        if _may_search_payloads(request):
            return events.annotate(shown_text_value=F("text"), shown_detail_value=F("detail"))
        searched = Q(action=DeadLetterEvent.Action.SEARCHED_PAYLOAD)
        return events.annotate(
            shown_text_value=Case(When(searched, then=Value(HIDDEN_TERM)), default=F("text"),
                                  output_field=TextField()),
            shown_detail_value=Case(When(searched, then=Value(None)), default=F("detail"),
                                    output_field=JSONField()))

    def hidden_fields(self, request: HttpRequest) -> Collection[str]:
        """A filter typed into the address bar reads the texts only for those who may see
        them (`?text__contains=opensesame` answered whether an operator searched for it)."""
        return () if _may_search_payloads(request) else self.redacted_fields

    def get_search_fields(self, request: HttpRequest) -> Any:
        return self.search_fields if _may_search_payloads(request) else ("actor", "fingerprint")

    @admin.display(description="text")
    def shown_text(self, event: DeadLetterEvent) -> str:
        return str(getattr(event, "shown_text_value", HIDDEN_TERM))

    @admin.display(description="detail")
    def shown_detail(self, event: DeadLetterEvent) -> str | None:
        """As the admin shows a JSON field (a method's dict would show as Python's repr)."""
        detail = getattr(event, "shown_detail_value", None)
        return json.dumps(detail, ensure_ascii=False) if detail else None


def _may_search_payloads(request: HttpRequest) -> bool:
    return bool(request.user.has_perm("workers.view_payload"))
