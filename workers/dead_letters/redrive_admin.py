"""A redrive's admin page: its start form while a draft, then its progress and controls
(start, pause, resume, cancel) for those who may requeue, and its audit trail."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from workers.core.progress_bar import progress_bar
from workers.core.read_only_admin import ReadOnlyAdmin
from workers.core.routing import QUEUES
from workers.dead_letters.models import Redrive
from workers.dead_letters.redrive import (
    redrive_cancel,
    redrive_pause,
    redrive_progress,
    redrive_resume,
    redrive_start,
)


@admin.register(Redrive)
class RedriveAdmin(ReadOnlyAdmin):
    """A redrive's page: its start form while a draft, then its progress and controls at
    the top, its settings and its audit trail below (workers/dead_letters/redrive.py)."""

    list_display = ("id", "description", "status", "progress", "succeeded", "failed",
                    "created_by", "created_at")
    list_filter = ("status",)

    @admin.display(description="progress")
    def progress(self, redrive: Redrive) -> str:
        figures = redrive_progress(redrive)
        return progress_bar(figures.percent, note=f"{figures.in_flight} in flight")

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        redrive = self.get_object(request, object_id)
        if redrive is None:
            raise Http404(f"no redrive with id {object_id}")
        may_act = request.user.has_perm("workers.requeue_deadletter")
        if request.method == "POST":
            if not may_act:
                raise PermissionDenied
            self._control(request, redrive)
            return HttpResponseRedirect(request.path)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"Redrive {redrive.pk}: {redrive.get_status_display()}",
                   "original": redrive, "redrive": redrive, "may_act": may_act,
                   "figures": redrive_progress(redrive), "queues": QUEUES,
                   "live": redrive.status in ("canary", "running"),
                   "events": redrive.events.order_by("-at")[:50]}
        return TemplateResponse(request, "admin/workers/redrive/progress.html", context)

    def _control(self, request: HttpRequest, redrive: Redrive) -> None:
        actor, data = request.user.get_username(), request.POST
        try:
            if data.get("control") == "start":
                redrive_start(redrive_id=redrive.pk, actor=actor,
                              rate=_number(data.get("rate"), float),
                              canary=_number(data.get("canary"), int),
                              max_failure_rate=_number(data.get("max_failure_rate"), float)
                              / 100, queue=data.get("queue", ""))
            elif data.get("control") == "pause":
                redrive_pause(redrive_id=redrive.pk, actor=actor)
            elif data.get("control") == "resume":
                redrive_resume(redrive_id=redrive.pk, actor=actor,
                               canary=(_number(data["canary"], int)  # blank: its own size
                                       if data.get("canary", "").strip() else None),
                               retry_failed=data.get("retry_failed") == "on")
            elif data.get("control") == "cancel":
                redrive_cancel(redrive_id=redrive.pk, actor=actor)
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)


def _number(text: str | None, kind: type[int] | type[float]) -> Any:
    """A form's number, or a ValueError that says which values are accepted."""
    try:
        return kind(text or 0)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{text!r} is not a {'whole ' if kind is int else ''}number"
                         ) from None
