"""Billing mirrors Stripe: Stripe ids, Stripe's statuses and field names, payments, and
what processing made of each event. Existing rows keep their data."""

import datetime

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Q


def blank_customer_ids_to_null(apps, schema_editor):
    apps.get_model("billing", "Customer").objects.filter(stripe_id="").update(stripe_id=None)


def null_customer_ids_to_blank(apps, schema_editor):
    apps.get_model("billing", "Customer").objects.filter(stripe_id=None).update(stripe_id="")


def invoices_take_their_customer(apps, schema_editor):
    Invoice = apps.get_model("billing", "Invoice")
    for invoice in Invoice.objects.select_related("subscription").iterator():
        invoice.customer_id = invoice.subscription.customer_id
        if invoice.status == "paid":
            invoice.amount_paid = invoice.amount_due
        else:
            invoice.amount_remaining = invoice.amount_due
        invoice.save(update_fields=["customer", "amount_paid", "amount_remaining"])


def payment_references_to_payments(apps, schema_editor):
    Invoice = apps.get_model("billing", "Invoice")
    Payment = apps.get_model("billing", "Payment")
    for invoice in Invoice.objects.exclude(payment_reference="").iterator():
        Payment.objects.get_or_create(stripe_id=invoice.payment_reference, defaults={
            "customer_id": invoice.customer_id, "invoice_id": invoice.pk,
            "status": "succeeded" if invoice.status == "paid" else "requires_payment_method",
            "amount": invoice.amount_due, "amount_received": invoice.amount_paid,
            "currency": invoice.currency})


def payments_to_payment_references(apps, schema_editor):
    Invoice = apps.get_model("billing", "Invoice")
    for payment in apps.get_model("billing", "Payment").objects.filter(
            invoice__isnull=False, status="succeeded").iterator():
        Invoice.objects.filter(pk=payment.invoice_id).update(payment_reference=payment.stripe_id)


def events_take_their_created_time(apps, schema_editor):
    PaymentEvent = apps.get_model("billing", "PaymentEvent")
    for event in PaymentEvent.objects.iterator():
        created = event.payload.get("created")
        event.created = (datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
                         if isinstance(created, int) else event.received_at)
        obj = (event.payload.get("data") or {}).get("object") or {}
        event.object_id = str(obj.get("id") or "")[:255]
        event.save(update_fields=["created", "object_id"])


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="subscription", name="subscription_due"),
        migrations.RemoveIndex(model_name="invoice", name="invoice_dunning"),
        migrations.RemoveConstraint(model_name="invoice", name="invoice_one_per_period"),
        # Customer
        migrations.RenameField(model_name="customer", old_name="provider_customer_id",
                               new_name="stripe_id"),
        migrations.AlterField(model_name="customer", name="stripe_id",
                              field=models.CharField(blank=True, max_length=255, null=True)),
        migrations.RunPython(blank_customer_ids_to_null, null_customer_ids_to_blank),
        migrations.AlterField(
            model_name="customer", name="stripe_id",
            field=models.CharField(blank=True, help_text="Stripe's customer id (cus_…)",
                                   max_length=255, null=True, unique=True)),
        # Subscription
        migrations.AddField(
            model_name="subscription", name="stripe_id",
            field=models.CharField(blank=True, help_text="Stripe's subscription id (sub_…); "
                                   "empty when the app bills this subscription itself",
                                   max_length=255, null=True, unique=True)),
        migrations.AlterField(model_name="subscription", name="plan",
                              field=models.CharField(max_length=255)),
        migrations.AlterField(
            model_name="subscription", name="status",
            field=models.CharField(choices=[
                ("incomplete", "Incomplete"), ("incomplete_expired", "Incomplete, expired"),
                ("trialing", "Trialing"), ("active", "Active"), ("past_due", "Past due"),
                ("canceled", "Canceled"), ("unpaid", "Unpaid"), ("paused", "Paused")],
                default="active", max_length=24)),
        migrations.RenameField(model_name="subscription", old_name="next_billing_date",
                               new_name="current_period_end"),
        migrations.AlterField(model_name="subscription", name="current_period_end",
                              field=models.DateTimeField()),
        migrations.AddField(model_name="subscription", name="current_period_start",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="subscription", name="cancel_at_period_end",
                            field=models.BooleanField(default=False)),
        migrations.AddField(model_name="subscription", name="canceled_at",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="subscription", name="stripe_event_created",
                            field=models.DateTimeField(blank=True, editable=False, null=True)),
        # Invoice
        migrations.AddField(
            model_name="invoice", name="customer",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT,
                                    related_name="invoices", to="billing.customer")),
        migrations.RenameField(model_name="invoice", old_name="amount_cents",
                               new_name="amount_due"),
        migrations.AddField(model_name="invoice", name="amount_paid",
                            field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="invoice", name="amount_remaining",
                            field=models.PositiveIntegerField(default=0)),
        migrations.RunPython(invoices_take_their_customer, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="invoice", name="customer",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                    related_name="invoices", to="billing.customer")),
        migrations.AlterField(
            model_name="invoice", name="subscription",
            field=models.ForeignKey(blank=True, null=True,
                                    on_delete=django.db.models.deletion.PROTECT,
                                    related_name="invoices", to="billing.subscription")),
        migrations.AddField(
            model_name="invoice", name="stripe_id",
            field=models.CharField(blank=True, help_text="Stripe's invoice id (in_…)",
                                   max_length=255, null=True, unique=True)),
        migrations.AlterField(model_name="invoice", name="number",
                              field=models.CharField(blank=True, max_length=64)),
        migrations.AlterField(
            model_name="invoice", name="status",
            field=models.CharField(choices=[
                ("draft", "Draft"), ("open", "Open"), ("paid", "Paid"),
                ("uncollectible", "Uncollectible"), ("void", "Void")],
                default="open", max_length=16)),
        migrations.AlterField(model_name="invoice", name="period_start",
                              field=models.DateTimeField()),
        migrations.AlterField(model_name="invoice", name="period_end",
                              field=models.DateTimeField()),
        migrations.RenameField(model_name="invoice", old_name="charge_attempts",
                               new_name="attempt_count"),
        migrations.RenameField(model_name="invoice", old_name="next_charge_at",
                               new_name="next_payment_attempt"),
        migrations.AddField(model_name="invoice", name="hosted_invoice_url",
                            field=models.URLField(blank=True, max_length=1000)),
        migrations.AddField(model_name="invoice", name="stripe_event_created",
                            field=models.DateTimeField(blank=True, editable=False, null=True)),
        # Payment
        migrations.CreateModel(
            name="Payment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True,
                                           serialize=False, verbose_name="ID")),
                ("stripe_id", models.CharField(help_text="Stripe's PaymentIntent id (pi_…)",
                                               max_length=255, unique=True)),
                ("status", models.CharField(choices=[
                    ("requires_payment_method", "Requires payment method"),
                    ("requires_confirmation", "Requires confirmation"),
                    ("requires_action", "Requires action"), ("processing", "Processing"),
                    ("requires_capture", "Requires capture"), ("canceled", "Canceled"),
                    ("succeeded", "Succeeded")], max_length=32)),
                ("amount", models.PositiveIntegerField()),
                ("amount_received", models.PositiveIntegerField(default=0)),
                ("amount_refunded", models.PositiveIntegerField(default=0)),
                ("currency", models.CharField(max_length=3)),
                ("last_failure", models.TextField(blank=True)),
                ("stripe_event_created", models.DateTimeField(blank=True, editable=False,
                                                              null=True)),
                ("refund_event_created", models.DateTimeField(blank=True, editable=False,
                                                              null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT,
                                               related_name="payments",
                                               to="billing.customer")),
                ("invoice", models.ForeignKey(blank=True, null=True,
                                              on_delete=django.db.models.deletion.PROTECT,
                                              related_name="payments",
                                              to="billing.invoice")),
            ],
        ),
        migrations.RunPython(payment_references_to_payments, payments_to_payment_references),
        migrations.RemoveField(model_name="invoice", name="payment_reference"),
        # PaymentEvent
        migrations.AddField(model_name="paymentevent", name="object_id",
                            field=models.CharField(blank=True, default="", max_length=255),
                            preserve_default=False),
        migrations.AddField(model_name="paymentevent", name="created",
                            field=models.DateTimeField(null=True)),
        migrations.AddField(
            model_name="paymentevent", name="detail",
            field=models.TextField(blank=True, help_text="Why it was unmatched, or left stale")),
        migrations.RunPython(events_take_their_created_time, migrations.RunPython.noop),
        migrations.AlterField(model_name="paymentevent", name="created",
                              field=models.DateTimeField(help_text="When Stripe created the "
                                                                   "event")),
        migrations.AlterField(
            model_name="paymentevent", name="outcome",
            field=models.CharField(choices=[
                ("pending", "Pending"), ("processed", "Processed"),
                ("ignored", "Ignored (type not handled)"),
                ("unmatched", "Unmatched (object not known here)"),
                ("failed", "Failed (in the dead-letter table)")],
                default="pending", max_length=16)),
        # Indexes and constraints
        migrations.AddIndex(model_name="subscription",
                            index=models.Index(fields=["status", "current_period_end"],
                                               name="subscription_due")),
        migrations.AddIndex(model_name="invoice",
                            index=models.Index(fields=["status", "next_payment_attempt"],
                                               name="invoice_dunning")),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.UniqueConstraint(condition=Q(stripe_id__isnull=True),
                                               fields=("subscription", "period_start"),
                                               name="invoice_one_per_period")),
        migrations.AddIndex(model_name="paymentevent",
                            index=models.Index(fields=["object_id", "created"],
                                               name="paymentevent_object")),
        migrations.AddIndex(model_name="paymentevent",
                            index=models.Index(fields=["outcome", "received_at"],
                                               name="paymentevent_outcome")),
    ]
