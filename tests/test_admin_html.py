"""Every admin page is well-formed HTML where a browser is strict about it: no <form>
inside another <form> (a browser drops the inner start tag, so the inner form's fields and
buttons submit the outer one, and the inner </form> closes the outer form early) and no
element id used twice (a label, a script or a test finds the wrong element).

Each page is rendered as a superuser with data in it: every model's changelist and the
change page of a row, and every dead-letter page (causes, edit and requeue, a redrive as a
draft and paused, the confirmation and result pages of a bulk action)."""

from collections import Counter
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from apps.analytics.models import Event, ExportJob, HourlyRollup
from apps.billing.models import Customer, Invoice, Payment, PaymentEvent, Subscription
from apps.notifications.models import (
    Campaign,
    CampaignChunk,
    Kind,
    Notification,
    NotificationPreference,
)
from tests.factories import DeadLetterFactory, dead_letter_roles
from workers.core.models import OutboxMessage
from workers.dead_letters.lifecycle import dead_letter_note
from workers.dead_letters.models import DeadLetter, Redrive
from workers.ops.alerts.models import Alert

DAY = datetime(2026, 12, 1, tzinfo=UTC)
SEND_NOTIFICATION = "apps.notifications.tasks.send_notification"


class PageStructure(HTMLParser):
    """Forms opened inside an open form, and ids used more than once, with their lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open_forms: list[str] = []
        self.nested_forms: list[str] = []
        self.ids: Counter[str] = Counter()
        self.id_lines: dict[str, list[int]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        line = self.getpos()[0]
        element_id = attributes.get("id")
        if element_id:
            self.ids[element_id] += 1
            self.id_lines.setdefault(element_id, []).append(line)
        if tag == "form":
            form = (f"<form id={attributes.get('id') or '-'} "
                    f"action={attributes.get('action') or '-'}> (line {line})")
            if self.open_forms:
                self.nested_forms.append(f"{form} inside {self.open_forms[-1]}")
            self.open_forms.append(form)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.open_forms:
            self.open_forms.pop()

    def problems(self) -> list[str]:
        duplicates = [f"id {element_id!r} {count} times (lines {self.id_lines[element_id]})"
                      for element_id, count in sorted(self.ids.items()) if count > 1]
        return [f"nested form: {form}" for form in self.nested_forms] + duplicates


def page_problems(html: str) -> list[str]:
    parser = PageStructure()
    parser.feed(html)
    parser.close()
    return parser.problems()


def test_the_checker_finds_a_nested_form_and_a_duplicate_id():
    assert page_problems('<form id="a"><form id="b"></form></form><p id="x"></p>') == [
        "nested form: <form id=b action=-> (line 1) inside <form id=a action=-> (line 1)"]
    assert page_problems('<form id="a"></form><form id="b"></form><i id="x"><b id="x">') == [
        "id 'x' 2 times (lines [1, 1])"]


# --- the pages -------------------------------------------------------------------------

def _label(model: type[Model]) -> str:
    return model._meta.label_lower


REGISTERED = sorted(_label(model) for model in admin.site._registry)
DEAD_LETTER_PAGES = ["change:workers.deadletter[unredacted]", "deadletter:groups",
                     "deadletter:edit", "deadletter:edit[refused]",
                     "deadletter:confirm[requeue]", "deadletter:confirm[discard]",
                     "deadletter:result[discard]", "change:workers.redrive[draft]",
                     "change:workers.redrive[paused]"]
PAGES = ["index", *(f"changelist:{label}" for label in REGISTERED),
         *(f"change:{label}" for label in REGISTERED if label != "workers.redrive"),
         *DEAD_LETTER_PAGES]


def a_row_of_every_model(admin_user: User) -> dict[str, Model]:
    """A row of each model the admin shows, and the dead letters and redrives the
    dead-letter pages are about."""
    dead_letter_roles()
    customer = Customer.objects.create(email="c@example.com", stripe_id="cus_html")
    subscription = Subscription.objects.create(customer=customer, plan="pro", amount_cents=100,
                                               stripe_id="sub_html", current_period_end=DAY)
    invoice = Invoice.objects.create(customer=customer, subscription=subscription,
                                     stripe_id="in_html", number="INV-1", amount_due=100,
                                     currency="usd", period_start=DAY, period_end=DAY)
    Payment.objects.create(customer=customer, invoice=invoice, stripe_id="pi_html",
                           status="succeeded", amount=100, currency="usd")
    PaymentEvent.objects.create(event_id="evt_html", type="invoice.paid", object_id="in_html",
                                created=DAY, payload={"id": "evt_html"})
    campaign = Campaign.objects.create(kind=Kind.NEWSLETTER, key="k", subject="s", body="b")
    CampaignChunk.objects.create(campaign=campaign, first_user_id=1, last_user_id=500)
    Notification.objects.create(kind=Kind.NEWSLETTER, recipient="r@example.com",
                                campaign=campaign, subject="s", body="b", idempotency_key="n1")
    NotificationPreference.objects.create(user=admin_user, digest_opt_out=True)
    Event.objects.create(name="signup", occurred_at=DAY, properties={"plan": "pro"})
    HourlyRollup.objects.create(hour=DAY, name="signup", count=3)
    ExportJob.objects.create(owner=admin_user, date_from=date(2026, 11, 1),
                             date_to=date(2026, 11, 30))
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="html check", task=SEND_NOTIFICATION, interval=every)
    CrontabSchedule.objects.create(minute="0", hour="3")
    ClockedSchedule.objects.create(clocked_time=DAY)
    SolarSchedule.objects.create(event="sunrise", latitude=52.5, longitude=13.4)

    row = DeadLetterFactory(
        task_name=SEND_NOTIFICATION, queue="critical", args=[7],
        kwargs={"card_number": "4242424242424242"}, traceback="Traceback (most recent call)",
        exception_type="apps.notifications.services.NotificationNotFound",
        message="notification 7 does not exist", attempt_errors=[{
            "attempt": 1, "exception_type": "workers.core.exceptions.TransientError",
            "message": "timed out", "at": DAY.isoformat()}])
    spare = DeadLetterFactory()
    dead_letter_note(actor="admin", text="looking into it", dead_letter=row)
    OutboxMessage.objects.create(task_id="outbox-html", task_name=SEND_NOTIFICATION,
                                 queue="critical", args=[7])
    Alert.objects.create(kind=Alert.Kind.FAILURE, key=row.fingerprint, title="new failure")
    draft = Redrive.objects.create(created_by="admin", description="cause: html",
                                   dead_letter_ids=[row.pk])
    paused = Redrive.objects.create(
        created_by="admin", description="cause: html", dead_letter_ids=[row.pk],
        status=Redrive.Status.PAUSED, status_reason="canary: 1 of 1 replays failed again",
        started_at=timezone.now(), position=1, sent=1, failed=1)
    return {"row": row, "spare": spare, "draft": draft, "paused": paused}


def fetch(client: Client, page: str, rows: dict[str, Model]):
    row = rows["row"]
    changelist = reverse("admin:workers_deadletter_changelist")
    edit = reverse("admin:workers_deadletter_edit", args=[row.pk])
    special = {
        "index": lambda: client.get(reverse("admin:index")),
        "change:workers.deadletter[unredacted]": lambda: client.get(
            reverse("admin:workers_deadletter_change", args=[row.pk]), {"unredacted": "1"}),
        "deadletter:groups": lambda: client.get(reverse("admin:workers_deadletter_groups"),
                                                {"show": "all"}),
        "deadletter:edit": lambda: client.get(edit),
        "deadletter:edit[refused]": lambda: client.post(edit, {
            "payload": '{"args": [1, 2, 3], "kwargs": {}}', "reason": "x"}),
        "deadletter:confirm[requeue]": lambda: client.post(changelist, {
            "action": "requeue", "_selected_action": [row.pk]}),
        "deadletter:confirm[discard]": lambda: client.post(changelist, {
            "action": "discard", "_selected_action": [row.pk]}),
        "deadletter:result[discard]": lambda: client.post(changelist, {
            "action": "discard", "_selected_action": [rows["spare"].pk],
            "select_across": "0", "confirmed": "yes", "frozen_ids": str(rows["spare"].pk)}),
        "change:workers.redrive[draft]": lambda: client.get(
            reverse("admin:workers_redrive_change", args=[rows["draft"].pk])),
        "change:workers.redrive[paused]": lambda: client.get(
            reverse("admin:workers_redrive_change", args=[rows["paused"].pk])),
    }
    if page in special:
        return special[page]()
    kind, label = page.split(":")
    model = next(model for model in admin.site._registry if _label(model) == label)
    meta = model._meta
    if kind == "changelist":
        return client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    obj = row if model is DeadLetter else model._default_manager.order_by("pk").first()
    if obj is None:
        pytest.skip(f"no {label} row to show")
    return client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change",
                              args=[obj.pk]))


@pytest.mark.django_db
@pytest.mark.parametrize("page", PAGES)
def test_admin_page_has_no_nested_form_and_no_duplicate_id(admin_client, admin_user, page):
    rows = a_row_of_every_model(admin_user)

    response = fetch(admin_client, page, rows)

    assert response.status_code == 200, (page, response.status_code)
    problems = page_problems(response.content.decode())
    assert not problems, f"{page}: " + "; ".join(problems)
