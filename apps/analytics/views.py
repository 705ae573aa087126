"""Event ingestion and CSV exports over HTTP."""

import hmac
import json
from datetime import date

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.analytics.models import ExportJob
from apps.analytics.services import events_store, export_request
from apps.analytics.validation import BatchLimits, BatchRejected, validate_batch

MAX_EXPORT_DAYS = 366


@csrf_exempt  # authenticated by the bearer token instead
@require_POST
def ingest_events(request: HttpRequest) -> JsonResponse:
    """202 with the count stored; 400 lists every bad item and stores none of the batch."""
    token = settings.ANALYTICS_INGEST_TOKEN
    if not token:
        return JsonResponse({"error": "ingestion token is not configured"}, status=503)
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return JsonResponse({"error": "missing or wrong bearer token"}, status=401)
    # Measured on the body as read rather than on the Content-Length header, which a
    # client may leave out; Django itself stops reading at DATA_UPLOAD_MAX_MEMORY_SIZE.
    if len(request.body) > settings.ANALYTICS_MAX_BODY_BYTES:
        return JsonResponse({"error": f"body exceeds {settings.ANALYTICS_MAX_BODY_BYTES} bytes"},
                            status=413)
    try:
        body = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return JsonResponse({"errors": [{"index": None, "reason": f"body is not JSON: {exc}"}]},
                            status=400)
    limits = BatchLimits(max_events=settings.ANALYTICS_MAX_BATCH,
                         max_properties_bytes=settings.ANALYTICS_MAX_PROPERTIES_BYTES)
    try:
        events = validate_batch(body=body, limits=limits)
    except BatchRejected as exc:
        return JsonResponse({"errors": exc.errors}, status=400)
    return JsonResponse({"accepted": events_store(events=events)}, status=202)


@require_POST
def export_create(request: HttpRequest) -> JsonResponse:
    """Ask for a CSV of raw events between two dates (inclusive), as the signed-in user."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "sign in first"}, status=401)
    try:
        body = json.loads(request.body)
        date_from = date.fromisoformat(body["date_from"])
        date_to = date.fromisoformat(body["date_to"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "send {\"date_from\": \"YYYY-MM-DD\", "
                                      "\"date_to\": \"YYYY-MM-DD\"}"}, status=400)
    if not date_from <= date_to or (date_to - date_from).days >= MAX_EXPORT_DAYS:
        return JsonResponse({"error": f"date_from must not be after date_to, and the range at "
                                      f"most {MAX_EXPORT_DAYS} days"}, status=400)
    job = export_request(owner_id=request.user.pk, date_from=date_from, date_to=date_to)
    return JsonResponse(_describe(job), status=202)


@require_GET
def export_detail(request: HttpRequest, export_id: int) -> JsonResponse:
    return JsonResponse(_describe(_own_export(request, export_id)))


@require_GET
def export_download(request: HttpRequest, export_id: int) -> FileResponse | JsonResponse:
    """The file, to its owner or to a user who may view export jobs (the admin's link):
    media is not served, so this view is the only way to it. Never cached, since the
    rows are customer data."""
    job = _own_export(request, export_id, or_permission="analytics.view_exportjob")
    if job.status != ExportJob.Status.DONE:
        return JsonResponse({"error": f"the export is {job.status}"}, status=409)
    response = FileResponse(job.file.open("rb"), as_attachment=True,
                            filename=(job.file.name or "").rpartition("/")[2],
                            content_type="text/csv")
    response["Cache-Control"] = "no-store"
    return response


def _own_export(request: HttpRequest, export_id: int, *,
                or_permission: str | None = None) -> ExportJob:
    """The caller's export, or with `or_permission` anyone's; another's (or none) is a 404,
    so ids reveal nothing."""
    if not request.user.is_authenticated:
        raise Http404
    jobs = ExportJob.objects.all()
    if not (or_permission and request.user.has_perm(or_permission)):
        jobs = jobs.filter(owner=request.user)
    try:
        return jobs.get(pk=export_id)
    except ExportJob.DoesNotExist:
        raise Http404 from None


def _describe(job: ExportJob) -> dict:
    return {
        "id": job.pk, "status": job.status, "progress": job.progress, "rows": job.row_count,
        "date_from": job.date_from.isoformat(), "date_to": job.date_to.isoformat(),
        "status_url": reverse("analytics-export", args=[job.pk]),
        "download_url": reverse("analytics-export-download", args=[job.pk])
        if job.status == ExportJob.Status.DONE else None,
        "error": job.error or None,
    }
