"""The Stripe gateway: outcomes sorted for the retry policy."""


import pytest

from apps.billing.gateway import GatewayRejected, GatewayUnavailable
from apps.billing.models import Invoice
from apps.billing.services import invoice_charge
from tests.factories import invoice_for


@pytest.mark.django_db
@pytest.mark.parametrize(("customer", "error"), [
    ("cus_flaky", GatewayUnavailable), ("cus_ratelimited", GatewayUnavailable),
    ("cus_unknown", GatewayRejected),
])
def test_gateway_errors_are_classified_and_change_nothing(stripe_api, customer, error):
    invoice = invoice_for("x@example.com", customer_id=customer)
    with pytest.raises(error):
        invoice_charge(invoice_id=invoice.pk)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.attempt_count) == (Invoice.Status.OPEN, 0)


@pytest.mark.django_db
def test_a_missing_api_key_is_a_permanent_error(settings):
    settings.STRIPE_API_KEY = ""
    invoice = invoice_for("nokey@example.com")
    with pytest.raises(GatewayRejected, match="STRIPE_API_KEY"):
        invoice_charge(invoice_id=invoice.pk)
