"""`POST /webhooks/billing/`: verify, store, acknowledge. Processing happens in a worker."""

import stripe
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing.events import MalformedEvent, payment_event_parse, payment_event_store


@csrf_exempt  # authenticated by the signature instead
@require_POST
def billing_webhook(request: HttpRequest) -> JsonResponse:
    """400 for a bad signature, stale timestamp, malformed body or another API version:
    nothing is stored, and Stripe retries the delivery for three days."""
    if not settings.BILLING_WEBHOOK_SECRET:
        return JsonResponse({"error": "webhook secret is not configured"}, status=503)
    try:
        stripe.WebhookSignature.verify_header(
            request.body, request.headers.get("Stripe-Signature"),
            settings.BILLING_WEBHOOK_SECRET, tolerance=settings.BILLING_WEBHOOK_TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        return JsonResponse({"error": f"signature rejected: {exc.user_message}"}, status=400)
    try:
        event = payment_event_parse(raw=request.body)
    except MalformedEvent as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    stored, created = payment_event_store(event=event)
    return JsonResponse({"received": stored.event_id, "duplicate": not created})
