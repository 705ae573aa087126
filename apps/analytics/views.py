"""Event ingestion and CSV exports over HTTP."""

import hmac

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.analytics.models import ExportJob
from apps.analytics.permissions import (
    may_download_export,
    may_export_events,
    may_see_all_exports,
)
from apps.analytics.services import events_store, export_request
from apps.analytics.validation import (
    BATCH_MAX_DEPTH,
    EXPORT_REQUEST_MAX_BYTES,
    EXPORT_REQUEST_MAX_DEPTH,
    BatchLimits,
    BatchRejected,
    ExportRangeRejected,
    validate_batch,
    validate_export_range,
)
from workers.core.json_input import JSONInputError, parse_json


@csrf_exempt  # authenticated by the bearer token instead
@require_POST
def ingest_events(request: HttpRequest) -> JsonResponse:
    """202 with the count stored; 400 lists every bad item and stores none of the batch."""
    token = settings.ANALYTICS_INGEST_TOKEN
    if not token:
        return JsonResponse({"error": "ingestion token is not configured"}, status=503)
    # The scheme is case-insensitive (RFC 9110); without it, the header holds no token.
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.encode(errors="surrogatepass"), token.encode()):
        return JsonResponse({"error": "missing or wrong bearer token"}, status=401,
                            headers={"WWW-Authenticate": "Bearer"})
    # Measured on the body as read rather than on the Content-Length header, which a
    # client may leave out; Django itself stops reading at DATA_UPLOAD_MAX_MEMORY_SIZE.
    if len(request.body) > settings.ANALYTICS_MAX_BODY_BYTES:
        return JsonResponse({"error": f"body exceeds {settings.ANALYTICS_MAX_BODY_BYTES} bytes"},
                            status=413)
    try:
        body = parse_json(request.body, max_depth=BATCH_MAX_DEPTH,
                          max_bytes=settings.ANALYTICS_MAX_BODY_BYTES)
    except JSONInputError as exc:
        return JsonResponse({"errors": [{"index": None, "reason": str(exc)}]}, status=400)
    limits = BatchLimits(max_events=settings.ANALYTICS_MAX_BATCH,
                         max_properties_bytes=settings.ANALYTICS_MAX_PROPERTIES_BYTES)
    try:
        events = validate_batch(body=body, limits=limits)
    except BatchRejected as exc:
        return JsonResponse({"errors": exc.errors}, status=400)
    return JsonResponse({"accepted": events_store(events=events)}, status=202)


@require_POST
def export_create(request: HttpRequest) -> JsonResponse:
    """Ask for a CSV of raw events between two dates (inclusive), as the signed-in user,
    who must be allowed to view events: the file holds them all, properties included."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "sign in first"}, status=401)
    if not may_export_events(request.user):
        return JsonResponse({"error": "exporting events needs the permission to view them"},
                            status=403)
    try:
        body = parse_json(request.body, max_depth=EXPORT_REQUEST_MAX_DEPTH,
                          max_bytes=EXPORT_REQUEST_MAX_BYTES)
        date_from, date_to = validate_export_range(body=body)
    except (JSONInputError, ExportRangeRejected) as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    job = export_request(owner_id=request.user.pk, date_from=date_from, date_to=date_to)
    return JsonResponse(_describe(job), status=202)


@require_GET
def export_detail(request: HttpRequest, export_id: int) -> JsonResponse:
    return JsonResponse(_describe(_own_export(request, export_id)))


@require_GET
def export_download(request: HttpRequest, export_id: int) -> FileResponse | JsonResponse:
    """The file, to its owner while they may view events, or to staff who may view export
    jobs (the admin's link): media is not served, so this view is the only way to it.
    Never cached, since the rows are customer data."""
    job = _own_export(request, export_id, or_all=may_see_all_exports(request.user))
    if not may_download_export(request.user, job):
        return JsonResponse({"error": "downloading events needs the permission to view them"},
                            status=403)
    if job.status != ExportJob.Status.DONE:
        return JsonResponse({"error": f"the export is {job.status}"}, status=409)
    response = FileResponse(job.file.open("rb"), as_attachment=True,
                            filename=(job.file.name or "").rpartition("/")[2],
                            content_type="text/csv")
    response["Cache-Control"] = "no-store"
    return response


def _own_export(request: HttpRequest, export_id: int, *, or_all: bool = False) -> ExportJob:
    """The caller's export, or with `or_all` anyone's; another's (or none) is a 404, so ids
    reveal nothing."""
    if not request.user.is_authenticated:
        raise Http404
    jobs = ExportJob.objects.all() if or_all else ExportJob.objects.filter(owner=request.user)
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
