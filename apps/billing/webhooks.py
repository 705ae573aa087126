"""`POST /webhooks/billing/`: verify, store, acknowledge. Processing happens in a worker."""

import stripe
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing.stripe_events import MalformedEvent, payment_event_parse, payment_event_store


@csrf_exempt  # authenticated by the signature instead
@require_POST
def billing_webhook(request: HttpRequest) -> JsonResponse:
    """400 for a bad signature, stale timestamp, malformed body or another API version:
    nothing is stored, and Stripe retries the delivery for three days.

    The stripe library raises TypeError on a header that is not ASCII and
    UnicodeDecodeError on a body that is not UTF-8; neither is something Stripe sends, so
    both are refused here as a signature that cannot match."""
    if not settings.BILLING_WEBHOOK_SECRET:
        return JsonResponse({"error": "webhook secret is not configured"}, status=503)
    header = request.headers.get("Stripe-Signature", "")
    try:
        payload = request.body.decode("utf-8")
    except UnicodeDecodeError:
        return JsonResponse({"error": "signature rejected: the body is not UTF-8"}, status=400)
    if not header.isascii():
        return JsonResponse({"error": "signature rejected: the header is not ASCII"},
                            status=400)
    try:
        stripe.WebhookSignature.verify_header(payload, header, settings.BILLING_WEBHOOK_SECRET,
                                              tolerance=settings.BILLING_WEBHOOK_TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        return JsonResponse({"error": f"signature rejected: {exc.user_message}"}, status=400)
    try:
        event = payment_event_parse(raw=request.body)
    except MalformedEvent as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    stored, created = payment_event_store(event=event)
    return JsonResponse({"received": stored.event_id, "duplicate": not created})
