"""The age of a RabbitMQ queue's oldest waiting message, from when messages entered it."""

from celery.utils import uuid

from workers.core.arrivals import arrival_bucket, arrivals_write, oldest_arrival_age
from workers.core.platform_redis import redis_client

HOUR = 1_798_761_600  # 2027-01-01 00:00 UTC


def arrive(queue: str, counts: dict[float, int]) -> None:
    pipe = redis_client().pipeline(transaction=False)
    arrivals_write(pipe, {(queue, arrival_bucket(at)): amount for at, amount in counts.items()})
    pipe.execute()


def test_the_oldest_waiting_is_the_last_arrivals_first(test_redis):
    queue = f"arrivals-{uuid()}"
    now = HOUR + 30  # the older arrivals are in the hour before
    arrive(queue, {now - 100: 3, now - 50: 2, now + 300: 1})  # the last: a delay to come

    assert oldest_arrival_age(queue=queue, waiting=1, now=now) == 50
    assert oldest_arrival_age(queue=queue, waiting=2, now=now) == 50
    assert oldest_arrival_age(queue=queue, waiting=3, now=now) == 100
    assert oldest_arrival_age(queue=queue, waiting=0, now=now) is None


def test_a_backlog_older_than_what_is_counted_is_at_least_its_oldest_count(test_redis):
    queue = f"arrivals-{uuid()}"
    now = HOUR + 7200
    arrive(queue, {now - 5 * 3600: 2, now - 10: 1})  # five hours: past the first read

    assert oldest_arrival_age(queue=queue, waiting=3, now=now) == 5 * 3600
    assert oldest_arrival_age(queue=queue, waiting=9, now=now) == 5 * 3600  # a lower bound
    assert oldest_arrival_age(queue=f"arrivals-{uuid()}", waiting=4, now=now) is None
