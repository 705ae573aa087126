"""Notifications end to end: a real worker sends through a real SMTP server."""

import itertools
import time
from collections import Counter
from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from apps.notifications.models import Campaign, Kind, Notification, NotificationPreference
from apps.notifications.services import (
    campaign_create,
    campaign_fan_out,
    campaign_send_chunk,
    campaign_start,
    digest_start_for_day,
    notification_request,
)
from apps.notifications.tasks import fan_out_campaign, send_notification
from tests.fixtures import last_outbox_id, wait_for
from tests.tasks import FINISHED, RAN_ON
from workers.core.models import OutboxMessage
from workers.dead_letters.models import DeadLetter

sequence = itertools.count()


def welcome(address: str, key: str | None = None) -> Notification:
    return notification_request(kind=Kind.WELCOME, recipient=address, subject="Welcome!",
                                body="Glad you are here.", idempotency_key=key or address)


def address(prefix: str = "user") -> str:
    return f"{prefix}-{time.time_ns()}-{next(sequence)}@example.com"


def wait_status(notification: Notification, status: str) -> Notification:
    return wait_for(lambda: Notification.objects.filter(pk=notification.pk, status=status).first(),
                    what=f"notification {notification.pk} to be {status}")


def test_transactional_email_is_sent_once_on_critical(live_workers, smtp_server, test_redis):
    to = address()
    first = welcome(to)
    assert welcome(to).pk == first.pk  # requested again: same row, no new job
    assert welcome(to).pk == first.pk

    sent = wait_status(first, Notification.Status.SENT)
    wait_for(lambda: smtp_server.to(to), what="the email to arrive")
    # the same job delivered twice more (redelivery, manual retry) sends nothing new
    repeats = [send_notification.delay(first.pk).id for _ in range(2)]
    wait_for(lambda: all(test_redis.hexists(FINISHED, task_id) for task_id in repeats),
             what="both repeats to finish")

    assert len(smtp_server.to(to)) == 1
    assert smtp_server.to(to)[0].message_id == sent.provider_message_id
    assert sent.attempts == 1
    ran = [value for value in test_redis.hvals(RAN_ON) if value.startswith("critical@")]
    assert ran


def test_enqueue_waits_for_commit_and_a_rollback_sends_nothing(live_workers, smtp_server):
    to = address()
    jobs_before = last_outbox_id()

    def sign_up_then_fail() -> None:
        with transaction.atomic():
            welcome(to)
            raise RuntimeError("the signup failed after requesting the email")

    with pytest.raises(RuntimeError):
        sign_up_then_fail()
    # Nothing to wait for: the job was a row of the rolled-back transaction.
    assert not Notification.objects.filter(recipient=to).exists()
    assert last_outbox_id() == jobs_before
    assert smtp_server.to(to) == []


def test_a_rate_limited_provider_is_retried_until_it_accepts(live_workers, smtp_server):
    to = address("busy2")
    notification = welcome(to)

    sent = wait_status(notification, Notification.Status.SENT)

    assert sent.attempts == 3
    assert len(smtp_server.to(to)) == 1
    assert not DeadLetter.objects.filter(task_name__endswith="send_notification").exists()


def test_an_invalid_address_fails_at_once_and_is_dead_lettered(live_workers, smtp_server):
    to = address("invalid")
    notification = welcome(to)

    failed = wait_status(notification, Notification.Status.FAILED)
    row = wait_for(lambda: DeadLetter.objects.filter(args=[notification.pk]).first())

    assert failed.attempts == 1
    assert "550" in failed.last_error
    assert row.exception_type == "apps.notifications.providers.InvalidAddress"
    assert row.attempts == 1
    assert smtp_server.attempts[to] == 1


def make_users(count: int, opted_out: set[int]) -> list:
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"u{time.time_ns()}-{i}", email=address())
        for i in range(count))
    NotificationPreference.objects.bulk_create(
        NotificationPreference(user=user, newsletter_opt_out=True)
        for i, user in enumerate(users) if i in opted_out)
    return users


def test_a_newsletter_fans_out_in_chunks_skips_opt_outs_and_keeps_the_rate(live_workers,
                                                                            smtp_server,
                                                                            settings):
    users = make_users(45, opted_out={0, 7, 44})
    campaign = campaign_create(kind=Kind.NEWSLETTER, key=f"news-{time.time_ns()}",
                               subject="News", body="What is new", chunk_size=10)
    campaign_start(campaign_id=campaign.pk)
    campaign_start(campaign_id=campaign.pk)  # a double click starts nothing twice
    audience = [user.email for i, user in enumerate(users) if i not in {0, 7, 44}]

    wait_for(lambda: all(smtp_server.to(to) for to in audience),
             what="every subscriber to get the newsletter")

    campaign.refresh_from_db()
    assert (campaign.recipients_total, campaign.chunks_total) == (42, 5)
    assert all(len(smtp_server.to(to)) == 1 for to in audience)
    assert not any(smtp_server.to(users[i].email) for i in (0, 7, 44))
    per_second = Counter(int(item.at) for to in audience for item in smtp_server.to(to))
    assert max(per_second.values()) <= 20  # NOTIFICATIONS_RATE_PER_SECOND in the workers
    wait_for(lambda: Notification.objects.filter(campaign=campaign, status="sent").count() == 42,
             what="the last batch to commit")
    # Five chunks finished on two bulk processes: the last of them marks the campaign done.
    wait_for(lambda: Campaign.objects.filter(pk=campaign.pk, status="done").exists(),
             what="the campaign to be done")


@pytest.mark.django_db
def test_a_campaign_is_done_when_its_last_chunk_finishes_in_any_order(mailoutbox):
    users = make_users(3, opted_out=set())
    campaign = campaign_create(kind=Kind.NEWSLETTER, key=f"news-{time.time_ns()}",
                               subject="News", body="What is new", chunk_size=2)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    assert campaign_fan_out(campaign_id=campaign.pk) == 2

    campaign_send_chunk(campaign_id=campaign.pk, first_user_id=users[2].pk,
                        last_user_id=users[2].pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING  # users 0 and 1 still to go
    campaign_send_chunk(campaign_id=campaign.pk, first_user_id=users[0].pk,
                        last_user_id=users[1].pk)
    campaign.refresh_from_db()
    assert campaign.status == "done"
    assert len(mailoutbox) == 3
    # A repeat of a finished chunk (a redelivery) sends nothing and changes nothing.
    campaign_send_chunk(campaign_id=campaign.pk, first_user_id=users[0].pk,
                        last_user_id=users[1].pk)
    assert len(mailoutbox) == 3
    assert Campaign.objects.get(pk=campaign.pk).status == "done"


@pytest.mark.django_db
def test_a_campaign_with_nobody_to_send_to_is_done_at_its_fan_out():
    campaign = campaign_create(kind=Kind.NEWSLETTER, key=f"news-{time.time_ns()}",
                               subject="News", body="What is new")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    assert campaign_fan_out(campaign_id=campaign.pk) == 0
    assert Campaign.objects.get(pk=campaign.pk).status == "done"


@pytest.mark.django_db
def test_the_daily_digest_is_one_campaign_however_often_beat_fires():
    first = digest_start_for_day(day=date(2026, 11, 24))
    again = digest_start_for_day(day=date(2026, 11, 24))
    assert first.pk == again.pk
    assert Campaign.objects.filter(kind=Kind.DIGEST).count() == 1
    started = OutboxMessage.objects.filter(task_name=fan_out_campaign.name)
    assert list(started.values_list("args", flat=True)) == [[first.pk]]
    assert first.status == Campaign.Status.SENDING


@pytest.mark.django_db
def test_campaign_kinds_cannot_be_sent_as_transactional_email():
    with pytest.raises(ValueError, match="not a transactional kind"):
        notification_request(kind=Kind.NEWSLETTER, recipient="a@example.com", subject="s",
                             body="b", idempotency_key="k")
    assert not Notification.objects.exists()
