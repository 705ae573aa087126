"""Every admin page an operator opens renders, with data in it."""

from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.urls import reverse

from apps.billing.models import Customer, Invoice, Payment, Subscription
from apps.notifications.models import Campaign, Kind, Notification

DAY = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.django_db
def test_every_changelist_renders(admin_client, admin_user):
    customer = Customer.objects.create(email="c@example.com", stripe_id="cus_admin")
    subscription = Subscription.objects.create(customer=customer, plan="pro", amount_cents=100,
                                               stripe_id="sub_admin", current_period_end=DAY)
    invoice = Invoice.objects.create(customer=customer, subscription=subscription,
                                     stripe_id="in_admin", number="INV-1", amount_due=100,
                                     currency="usd", period_start=DAY, period_end=DAY)
    Payment.objects.create(customer=customer, invoice=invoice, stripe_id="pi_admin",
                           status="succeeded", amount=100, currency="usd")
    campaign = Campaign.objects.create(kind=Kind.NEWSLETTER, key="k", subject="s", body="b")
    for status in ("sent", "sent", "failed"):
        Notification.objects.create(kind=Kind.NEWSLETTER, recipient="r@example.com",
                                    campaign=campaign, subject="s", body="b", status=status,
                                    idempotency_key=f"{status}-{Notification.objects.count()}")

    for model in admin.site._registry:
        meta = model._meta
        page = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert page.status_code == 200, meta.label

    campaigns = admin_client.get(reverse("admin:notifications_campaign_changelist"))
    assert '<td class="field-sent">2</td>' in campaigns.content.decode()
    assert '<td class="field-failed">1</td>' in campaigns.content.decode()
