"""Charging a customer through Stripe (for invoices the app bills itself), with the
outcome sorted for the retry policy.

A declined card is a business outcome (dunning handles it), not an error; a timeout,
429 or 5xx is a TransientError; a request Stripe refuses for any other reason is a
PermanentError, since repeating it cannot help.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from workers.core.exceptions import PermanentError, TransientError

if TYPE_CHECKING:
    import stripe


class GatewayUnavailable(TransientError):
    """Stripe could not be reached or asked us to slow down."""


class GatewayRejected(PermanentError):
    """Stripe refused the request itself (bad key, unknown customer, invalid amount)."""


@dataclass(frozen=True)
class ChargeResult:
    succeeded: bool
    reference: str  # the PaymentIntent's id; empty if Stripe gave none
    status: str  # the PaymentIntent's status
    failure_reason: str = ""


def charge(*, customer_id: str, amount_cents: int, currency: str, description: str,
           metadata: dict[str, str], idempotency_key: str) -> ChargeResult:
    """Charge the customer's default payment method off-session.

    The idempotency key makes Stripe return the first result for a repeated request, so a
    retried or redelivered job never charges twice.
    """
    if not settings.STRIPE_API_KEY:
        raise GatewayRejected("STRIPE_API_KEY is not set: charges cannot be made")
    # Imported here: the library takes 0.15 s to import (it picks its HTTP client then),
    # which every process loading the app paid, `manage.py` commands and beat included,
    # for the few that charge a card.
    import stripe

    client = stripe.StripeClient(settings.STRIPE_API_KEY, max_network_retries=0,
                                 stripe_version=settings.STRIPE_API_VERSION,
                                 base_addresses={"api": settings.STRIPE_API_BASE})
    try:
        intent = client.v1.payment_intents.create(
            params={"amount": amount_cents, "currency": currency, "customer": customer_id,
                    "confirm": True, "off_session": True, "description": description,
                    "metadata": metadata},
            options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError as exc:
        return ChargeResult(False, _intent_id(exc), "requires_payment_method",
                            exc.user_message or str(exc))
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        raise GatewayUnavailable(str(exc)) from exc
    except stripe.StripeError as exc:
        raise GatewayRejected(str(exc)) from exc
    if intent.status == "succeeded":
        return ChargeResult(True, intent.id, intent.status)
    return ChargeResult(False, intent.id, intent.status, f"payment intent is {intent.status}")


def _intent_id(error: "stripe.CardError") -> str:
    body: Any = error.json_body or {}
    intent = body.get("error", {}).get("payment_intent") or {}
    return str(intent.get("id", ""))
