"""Dead-letter triage in the Django admin: groups by cause, rows, confirmed bulk actions,
and the draft of a redrive (its own page is `redrive_admin`; the audit trail's,
`audit_admin`).

Permissions: viewing is `view_deadletter`; payloads unredacted need `view_payload` (and
every view is audited); requeue and redrive `requeue_deadletter`; discard
`discard_deadletter`; edit-and-requeue `edit_deadletter`; acknowledge, snooze and notes
`change_deadletter`. The migration creates the
roles "Dead-letter viewers" (read-only) and "Dead-letter operators".

Every page redacts what it shows of a row (`workers.core.redaction`): arguments, message,
traceback, each attempt's error, raw body; the list, the causes, the confirmations and the
editor alike. The unredacted row is shown only in its own section of the row's page, to
those with `view_payload`, and each showing is recorded; so is each search of theirs,
which reaches into the stored arguments.
"""

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from workers.core.read_only_admin import lookup_reads
from workers.core.redaction import json_html, payload_html, redact_call, redact_text
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.edits import EditRefused, dead_letter_edit_requeue
from workers.dead_letters.export import dead_letters_export
from workers.dead_letters.lifecycle import (
    dead_letter_note,
    dead_letters_acknowledge,
    dead_letters_snooze,
)
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.redrive import (
    redrive_draft,
)
from workers.dead_letters.rules import OPEN, Action, refusal, replay_blocker
from workers.dead_letters.selectors import GROUP_ORDERS, dead_letter_groups
from workers.dead_letters.services import (
    dead_letters_discard,
    dead_letters_preview,
    dead_letters_purge,
    dead_letters_requeue,
)
from workers.dead_letters.shown import shown_text

# What the pages show redacted: never a filter in the list's address bar.
PAYLOAD_FIELDS = {"args", "kwargs", "original_args", "original_kwargs", "message", "traceback",
                  "raw_body", "attempt_errors"}
# Discarding more rows than this asks the operator to type the count.
TYPED_CONFIRMATION_OVER = 100


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _frozen_ids(text: str) -> list[int]:
    """The ids a confirmation page showed, posted back as one comma-separated field (a
    field per id would exceed Django's limit on form fields for big selections)."""
    return [int(part) for part in text.split(",") if part.strip().isdigit()]


def _audit_payload_search(request: HttpRequest, search_term: str) -> None:
    """A search that reads messages or stored arguments (only those with view_payload may
    run one) is recorded, once per page shown (on the list or by cause)."""
    if (search_term.strip() and request.method == "GET"
            and request.user.has_perm("workers.view_payload")):
        dead_letter_audit(actor=_actor(request), action=DeadLetterEvent.Action.SEARCHED_PAYLOAD,
                          text=f"searched for {redact_text(search_term.strip())[:200]!r}",
                          detail={"filter": _selection(request)})


def _selection(request: HttpRequest) -> dict[str, Any]:
    """The changelist filter an action ran on, for the audit trail (which every viewer
    reads: a search term is redacted like any text; a NUL, which PostgreSQL refuses, is
    written out)."""
    return {key: redact_text(str(value)).replace("\x00", "\\x00")
            for key, value in request.GET.items() if key not in {"p", "o"}}


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "task_name", "queue", "exception_name", "short_message", "status",
                    "attempts", "group", "boomerang", "failed_at")
    list_filter = ("status", "queue", "task_name", "exception_type", "failed_at")
    search_fields = ("=task_id", "task_name", "=fingerprint")
    date_hierarchy = "failed_at"
    actions = ("requeue", "redrive", "discard", "acknowledge", "snooze_day", "export_csv",
               "export_json")
    fields = ("task_name", "task_id", "links", "queue", "status", "snoozed_until", "fingerprint",
              "exception_type", "shown_message", "earlier_errors", "attempts", "worker",
              "failed_at", "payload", "raw_message", "formatted_traceback", "requeue_count",
              "requeued_at", "requeued_by", "replay_task_id", "replay_of", "redrive",
              "closed_at", "closed_by", "history")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        """Messages and the stored arguments (as JSON text) are searchable only by those who
        may see them: for anyone else a search would tell a redacted secret, prefix by
        prefix."""
        if request.user.has_perm("workers.view_payload"):
            return (*self.search_fields, "message", "args", "kwargs")
        return tuple(self.search_fields)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        """No filter typed into the address bar may read what the pages show redacted:
        `?kwargs__password__startswith=a` answered "1 dead letter" or "0", a secret
        recovered a character at a time. Regular expressions are refused too (a bad one
        is a database error). Refused lookups answer 400."""
        if lookup_reads(lookup, PAYLOAD_FIELDS):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[DeadLetter],
                           search_term: str) -> tuple[QuerySet[DeadLetter], bool]:
        """A search by someone who may search the stored arguments is recorded (once per
        page shown: an action posted from the results was recorded with the search)."""
        results = super().get_search_results(request, queryset, search_term)
        _audit_payload_search(request, search_term)
        return results

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.requeue_deadletter")

    def has_discard_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.discard_deadletter")

    def has_edit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("workers.edit_deadletter")

    def get_urls(self) -> list:
        return [path("groups/", self.admin_site.admin_view(self.groups_view),
                     name="workers_deadletter_groups"),
                path("<int:object_id>/edit/", self.admin_site.admin_view(self.edit_view),
                     name="workers_deadletter_edit"),
                *super().get_urls()]

    def edit_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Edit the arguments and requeue: validated against the task before anything
        changes; values shown redacted and left alone keep their real value."""
        if not self.has_edit_permission(request):
            raise PermissionDenied
        row = self.get_object(request, str(object_id))
        if row is None:
            raise Http404(f"no dead letter with id {object_id}")
        unredacted = request.user.has_perm("workers.view_payload")
        args, kwargs = row.args, row.kwargs
        if not unredacted:
            args, kwargs = redact_call(task_name=row.task_name, args=args, kwargs=kwargs)
        text = json.dumps({"args": args, "kwargs": kwargs}, indent=2)
        if unredacted and request.method == "GET":
            dead_letter_audit(actor=_actor(request),
                              action=DeadLetterEvent.Action.VIEWED_PAYLOAD, dead_letter=row,
                              text="to edit it")
        error, reason = "", ""
        if request.method == "POST":
            text, reason = request.POST.get("payload", ""), request.POST.get("reason", "")
            try:
                replay = dead_letter_edit_requeue(dead_letter_id=row.pk, payload=text,
                                                  reason=reason, actor=_actor(request))
            except EditRefused as refused:
                error = str(refused)
            else:
                self.message_user(request, f"Edited and requeued as {replay}.")
                return HttpResponseRedirect(reverse("admin:workers_deadletter_change",
                                                    args=[row.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"Edit and requeue #{row.pk} {row.task_name}", "original": row,
                   "message": shown_text(row=row, text=row.message),
                   "payload": text, "reason": reason, "error": error,
                   "redacted": not unredacted}
        return TemplateResponse(request, "admin/workers/deadletter/edit.html", context)

    # --- pages -------------------------------------------------------------------------
    def groups_view(self, request: HttpRequest) -> HttpResponse:
        """Failures grouped by cause (fingerprint), each with its actions."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self._group_action(request)
        _audit_payload_search(request, request.GET.get("q", ""))
        show = request.GET.get("show", "open")
        order = request.GET.get("o", "")
        order = order if order in GROUP_ORDERS else "last_seen"
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": "Dead letters by cause",
                   "groups": dead_letter_groups(
                       open_only=show == "open", order=order, search=request.GET.get("q", ""),
                       search_messages=request.user.has_perm("workers.view_payload")),
                   "search_messages": request.user.has_perm("workers.view_payload"),
                   "show": show, "query": request.GET.get("q", ""), "order": order,
                   "orders": [(key, key.replace("_", " ")) for key in GROUP_ORDERS],
                   "can_requeue": self.has_requeue_permission(request),
                   "can_discard": self.has_discard_permission(request),
                   "can_change": self.has_change_permission(request)}
        return TemplateResponse(request, "admin/workers/deadletter/groups.html", context)

    def _group_action(self, request: HttpRequest) -> HttpResponse:
        fingerprint = request.POST.get("fingerprint", "")
        open_rows = DeadLetter.objects.filter(fingerprint=fingerprint, status__in=OPEN)
        action = request.POST.get("action")
        if action == "redrive" and self.has_requeue_permission(request):
            return self._draft_redrive(request, open_rows, f"cause {fingerprint}: "
                                       f"{request.POST.get('title', '')[:200]}")
        if action == "note" and self.has_change_permission(request):
            try:
                dead_letter_note(actor=_actor(request), text=request.POST.get("note", ""),
                                 fingerprint=fingerprint)
            except ValueError as error:
                self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:workers_deadletter_groups"))
        if action == "acknowledge" and self.has_change_permission(request):
            done = dead_letters_acknowledge(
                dead_letter_ids=open_rows.values_list("pk", flat=True), actor=_actor(request),
                detail={"fingerprint": fingerprint})
            self.message_user(request, f"{done} dead letter(s) acknowledged.")
            return HttpResponseRedirect(reverse("admin:workers_deadletter_groups"))
        raise PermissionDenied

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Read-only page (no Save buttons) with the actions the row allows, its notes and
        history, and the unredacted payload for those allowed to see it (audited)."""
        row = self.get_object(request, object_id)
        if row is not None and request.method == "POST":
            return self._row_post(request, row)
        actions, blocker, can_edit = [], "", False
        if row is not None:
            if not refusal(Action.REQUEUE, row) and self.has_requeue_permission(request):
                actions.append(("requeue", "Requeue"))
            if not refusal(Action.DISCARD, row) and self.has_discard_permission(request):
                actions.append(("discard", "Discard"))
            if row.status in OPEN:
                blocker = replay_blocker(row)
            can_edit = not refusal(Action.EDIT, row) and self.has_edit_permission(request)
        unredacted = None
        if (row is not None and request.GET.get("unredacted")
                and request.user.has_perm("workers.view_payload")):
            dead_letter_audit(actor=_actor(request),
                              action=DeadLetterEvent.Action.VIEWED_PAYLOAD, dead_letter=row)
            unredacted = _unredacted_html(row)
        context = {"triage_actions": actions, "show_save": False, "can_edit": can_edit,
                   "replay_blocker": blocker,
                   "show_save_and_continue": False, "show_save_and_add_another": False,
                   "unredacted": unredacted,
                   "can_unredact": request.user.has_perm("workers.view_payload"),
                   "can_note": self.has_change_permission(request, row),
                   **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    def delete_model(self, request: HttpRequest, obj: DeadLetter) -> None:
        """Deleting is a purge: through the service, so it is in the audit trail."""
        dead_letters_purge(rows=DeadLetter.objects.filter(pk=obj.pk), actor=_actor(request),
                           detail={"from": "admin"})

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        dead_letters_purge(rows=queryset, actor=_actor(request),
                           detail={"from": "admin", "filter": _selection(request)})

    def _row_post(self, request: HttpRequest, row: DeadLetter) -> HttpResponse:
        if not self.has_change_permission(request, row):
            raise PermissionDenied
        try:
            dead_letter_note(actor=_actor(request), text=request.POST.get("note", ""),
                             dead_letter=row)
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
        return HttpResponseRedirect(request.path)

    # --- columns and fields ------------------------------------------------------------
    @admin.display(description="exception", ordering="exception_type")
    def exception_name(self, row: DeadLetter) -> str:
        return row.exception_type.rpartition(".")[2]

    @admin.display(description="message")
    def short_message(self, row: DeadLetter) -> str:
        return shown_text(row=row, text=row.message)[:80]

    @admin.display(description="message (secrets redacted)")
    def shown_message(self, row: DeadLetter) -> str:
        return _text_html(row, row.message)

    @admin.display(description="cause")
    def group(self, row: DeadLetter) -> str:
        url = reverse("admin:workers_deadletter_changelist")
        return format_html('<a href="{}?fingerprint={}">{}</a>', url, row.fingerprint,
                           row.fingerprint[:8])

    @admin.display(description="replay of")
    def boomerang(self, row: DeadLetter) -> str:
        """A replay that failed again, linked to the row it replayed."""
        if row.replay_of_id is None:
            return ""
        return format_html('<a href="{}">&#8617; #{}</a>', reverse(
            "admin:workers_deadletter_change", args=[row.replay_of_id]), row.replay_of_id)

    @admin.display(description="elsewhere")
    def links(self, row: DeadLetter) -> str:
        """Its task in Flower and its events in Sentry, where those are configured."""
        links = []
        if settings.FLOWER_PUBLIC_URL:
            links.append(format_html('<a href="{}/task/{}">Flower</a>',
                                     settings.FLOWER_PUBLIC_URL.rstrip("/"), row.task_id))
        if settings.SENTRY_ISSUES_URL:
            links.append(format_html('<a href="{}?{}">Sentry</a>', settings.SENTRY_ISSUES_URL,
                                     urlencode({"query": f"celery_task_id:{row.task_id}"})))
        return format_html_join(" · ", "{}", ((link,) for link in links)) or "-"

    @admin.display(description="payload (secrets redacted)")
    def payload(self, row: DeadLetter) -> str:
        return payload_html(task_name=row.task_name, args=row.args, kwargs=row.kwargs)

    @admin.display(description="errors of the earlier attempts (secrets redacted)")
    def earlier_errors(self, row: DeadLetter) -> str:
        return _text_html(row, _earlier_errors(row)) if row.attempt_errors else "-"

    @admin.display(description="raw message body (poison messages; secrets redacted)")
    def raw_message(self, row: DeadLetter) -> str:
        return _text_html(row, row.raw_body) if row.raw_body else "-"

    @admin.display(description="traceback (secrets redacted)")
    def formatted_traceback(self, row: DeadLetter) -> str:
        return _text_html(row, row.traceback)

    @admin.display(description="notes and history")
    def history(self, row: DeadLetter) -> str:
        events = DeadLetterEvent.objects.filter(dead_letter=row)[:50]
        lines = [f"{event.at:%Y-%m-%d %H:%M} {event.actor}: "
                 f"{event.get_action_display()}{': ' + event.text if event.text else ''}"
                 for event in events]
        return format_html("<pre>{}</pre>", "\n".join(lines)) if lines else "-"

    # --- actions -----------------------------------------------------------------------
    @admin.action(description="Requeue selected now, on the original queue",
                  permissions=["requeue"])
    def requeue(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> HttpResponse | None:
        return self._confirmed(request, rows, action=Action.REQUEUE, run=self._run_requeue)

    @admin.action(description="Redrive selected (canary first, at a set rate)…",
                  permissions=["requeue"])
    def redrive(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> HttpResponse:
        return self._draft_redrive(request, rows, f"filter {_selection(request) or 'all'}")

    @admin.action(description="Discard selected (keep for the record, never replay)",
                  permissions=["discard"])
    def discard(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> HttpResponse | None:
        return self._confirmed(request, rows, action=Action.DISCARD, run=self._run_discard)

    @admin.action(description="Acknowledge selected (seen, owned)", permissions=["change"])
    def acknowledge(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> None:
        done = dead_letters_acknowledge(dead_letter_ids=rows.values_list("pk", flat=True),
                                        actor=_actor(request),
                                        detail={"filter": _selection(request)})
        self.message_user(request, f"{done} dead letter(s) acknowledged.")

    @admin.action(description="Snooze selected for a day", permissions=["change"])
    def snooze_day(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> None:
        done = dead_letters_snooze(dead_letter_ids=rows.values_list("pk", flat=True),
                                   until=timezone.now() + timedelta(days=1),
                                   actor=_actor(request), detail={"filter": _selection(request)})
        self.message_user(request, f"{done} dead letter(s) snoozed for a day.")

    @admin.action(description="Export selected as CSV (payloads redacted)")
    def export_csv(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> HttpResponse:
        return self._export(request, rows, "csv", "text/csv")

    @admin.action(description="Export selected as JSON (payloads redacted)")
    def export_json(self, request: HttpRequest, rows: QuerySet[DeadLetter]) -> HttpResponse:
        return self._export(request, rows, "json", "application/json")

    def _export(self, request: HttpRequest, rows: QuerySet[DeadLetter], file_format: str,
                content_type: str) -> HttpResponse:
        body = dead_letters_export(rows=rows, file_format=file_format, actor=_actor(request),
                                   detail={"filter": _selection(request)})
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="dead-letters.{file_format}"'
        return response

    def _confirmed(self, request: HttpRequest, rows: QuerySet[DeadLetter], *, action: Action,
                   run: Any) -> HttpResponse | None:
        """A page that says how many rows the action will touch (the ids frozen when it
        was shown) and how many of the selection it leaves out, and why; discarding
        many asks for the count typed in."""
        if request.POST.get("confirmed") == "yes":
            ids = _frozen_ids(request.POST.get("frozen_ids", ""))
            typed = action == Action.DISCARD and len(ids) > TYPED_CONFIRMATION_OVER
            if typed and request.POST.get("typed", "").strip() != str(len(ids)):
                self.message_user(request, f"Type {len(ids)} to confirm; nothing was done.",
                                  messages.ERROR)
                return None
            return run(request, ids)
        preview = dead_letters_preview(action=action,
                                       dead_letter_ids=rows.values_list("pk", flat=True))
        ids = preview.eligible
        typed = action == Action.DISCARD and len(ids) > TYPED_CONFIRMATION_OVER
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"{action.capitalize()} {len(ids)} dead letter(s)?",
                   "count": len(ids), "frozen_ids": ",".join(map(str, ids)),
                   "selected": len(ids) + sum(preview.left_out.values()),
                   "left_out": preview.left_out.items(),
                   "first_id": ids[0] if ids else "",
                   "action": action, "verb": str(action), "typed": typed,
                   "examples": [{"pk": row.pk, "task_name": row.task_name,
                                 "message": shown_text(row=row, text=row.message)}
                                for row in DeadLetter.objects.filter(pk__in=ids[-5:])
                                .order_by("-pk")]}
        return TemplateResponse(request, "admin/workers/deadletter/confirm.html", context)

    def _run_requeue(self, request: HttpRequest, ids: list[int]) -> HttpResponse:
        outcome = dead_letters_requeue(dead_letter_ids=ids, actor=_actor(request),
                                       detail={"filter": _selection(request)})
        return self._result(request, verb="requeued", ids=ids, done=len(outcome.requeued),
                            refused=outcome.refused)

    def _run_discard(self, request: HttpRequest, ids: list[int]) -> HttpResponse:
        outcome = dead_letters_discard(dead_letter_ids=ids, actor=_actor(request),
                                       detail={"filter": _selection(request)})
        return self._result(request, verb="discarded", ids=ids, done=len(outcome.discarded),
                            refused=outcome.refused)

    def _result(self, request: HttpRequest, *, verb: str, ids: list[int], done: int,
                refused: dict[int, str]) -> HttpResponse:
        """The page after a bulk action (the service recorded it in the audit trail): how
        many were asked for, done and refused, and why (the first reasons)."""
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"{done} of {len(ids)} dead letter(s) {verb}", "verb": verb,
                   "asked": len(ids), "done": done, "refused": len(refused),
                   "reasons": list(refused.values())[:20],
                   "back": request.get_full_path()}
        return TemplateResponse(request, "admin/workers/deadletter/result.html", context)

    def _draft_redrive(self, request: HttpRequest, rows: QuerySet[DeadLetter],
                       description: str) -> HttpResponse:
        try:
            redrive = redrive_draft(dead_letter_ids=list(rows.values_list("pk", flat=True)),
                                    actor=_actor(request), description=description)
        except ValueError as error:
            self.message_user(request, str(error), messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        return HttpResponseRedirect(reverse("admin:workers_redrive_change", args=[redrive.pk]))


def _text_html(row: DeadLetter, text: str) -> str:
    return format_html("<pre>{}</pre>", shown_text(row=row, text=text))


def _earlier_errors(row: DeadLetter) -> str:
    return "\n".join(f"attempt {entry['attempt']}: {entry['exception_type']}: "
                     f"{entry['message']}" for entry in row.attempt_errors)


def _unredacted_html(row: DeadLetter) -> str:
    """The row as it was stored, for those allowed to see it (the caller records it)."""
    sections = [("payload", json_html({"args": row.args, "kwargs": row.kwargs})),
                ("message", format_html("<pre>{}</pre>", row.message)),
                ("errors of the earlier attempts",
                 format_html("<pre>{}</pre>", _earlier_errors(row))),
                ("traceback", format_html("<pre>{}</pre>", row.traceback)),
                ("raw message body", format_html("<pre>{}</pre>", row.raw_body))]
    return format_html_join("", '<h3 class="unredacted">{}</h3>{}',
                            ((label, html) for label, html in sections if html != "<pre></pre>"))
