"""Billing reads."""

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from apps.billing.models import Customer, Subscription

# Access follows the subscription's status as Stripe reports it. Past due keeps access
# while Stripe retries the charge (most failures are expired cards fixed within days);
# Stripe then moves the subscription to canceled or unpaid, per the account's settings.
ACCESS_STATUSES = (Subscription.Status.TRIALING, Subscription.Status.ACTIVE,
                   Subscription.Status.PAST_DUE)


def customers_with_access_flag(customers: QuerySet[Customer]) -> QuerySet[Customer]:
    """Each customer with `has_access`, as `customer_has_access` answers it, in one query."""
    return customers.annotate(has_access=Exists(_granting(customer=OuterRef("pk"))))


def customer_has_access(*, customer_id: int) -> bool:
    """What a view asks before serving a paid feature."""
    return _granting(customer_id=customer_id).exists()


def _granting(**customer: Any) -> QuerySet[Subscription]:
    return Subscription.objects.filter(status__in=ACCESS_STATUSES, **customer)
