"""Notification jobs. Routes: send_notification on `critical`, campaigns on `bulk`."""

from celery import shared_task
from django.utils import timezone

from apps.notifications.services import (
    campaign_fan_out,
    campaign_send_chunk,
    digest_start_for_day,
    notification_send,
)
from workers.core.routing import BULK, CRITICAL


# The row lock and its status make a repeat send nothing; each failed attempt is kept.
@shared_task(route=CRITICAL, idempotent=True, max_retries=8, retry_backoff_max=300)
def send_notification(notification_id: int) -> None:
    notification_send(notification_id=notification_id)


@shared_task(route=BULK, effect_once=True, effect_key="campaign-fan-out:{campaign_id}",
             soft_time_limit=120, time_limit=150)
def fan_out_campaign(campaign_id: int) -> None:
    campaign_fan_out(campaign_id=campaign_id)


# Published through the fan-out's outbox. Rows are unique per campaign and user and each is
# sent under its row lock and status, so a second run of a range sends nothing new.
@shared_task(route=BULK, idempotent=True, max_retries=10, retry_backoff_max=600,
             soft_time_limit=300, time_limit=360)
def send_campaign_chunk(campaign_id: int, first_user_id: int, last_user_id: int) -> None:
    campaign_send_chunk(campaign_id=campaign_id, first_user_id=first_user_id,
                        last_user_id=last_user_id)


@shared_task(route=BULK)
def send_daily_digest() -> None:
    digest_start_for_day(day=timezone.localdate())
