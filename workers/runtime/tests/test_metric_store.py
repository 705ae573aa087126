"""The per-process metrics table and its flush into Redis."""

from celery.utils import uuid

from workers.core.platform_redis import redis_client
from workers.runtime.metric_store import HOST_KEY, HOSTS_KEY, Recorder, field, read_hosts


def test_a_runtime_of_exactly_zero_after_a_fraction_flushes_and_counts_once(test_redis):
    """A `_sum` is a float in Redis: adding 0.0 to it with HINCRBY is refused, and a refused
    pipeline had been kept and sent again, counting everything else in it every flush."""
    host, labels = f"metric-store-{uuid()}", ("tests.tasks.log_line", "critical")
    recorder = Recorder()

    recorder.observe("celery_task_queue_wait_time", host, labels, 0.25)
    recorder.flush()
    recorder.observe("celery_task_queue_wait_time", host, labels, 0.0)  # started on its ETA
    recorder.count("celery_task_started", host, labels)
    recorder.flush()
    recorder.flush()

    series = read_hosts()[host]
    assert series[field("celery_task_queue_wait_time", labels, "_sum")] == 0.25
    assert series[field("celery_task_queue_wait_time", labels, "_count")] == 2
    assert series[field("celery_task_started", labels)] == 1


def test_a_flush_redis_refuses_is_not_sent_again_nor_fails_the_scrape(test_redis):
    host, labels = f"metric-store-{uuid()}", ("tests.tasks.log_line", "bulk")
    redis_client().hset(HOST_KEY + host, field("celery_task_retried", labels), "garbled")
    recorder = Recorder()
    try:
        recorder.count("celery_task_retried", host, labels)
        recorder.count("celery_task_started", host, labels)
        recorder.flush()
        recorder.flush()

        assert redis_client().hget(HOST_KEY + host, field("celery_task_started", labels)) == b"1"
        assert read_hosts()[host] == {field("celery_task_started", labels): 1.0}
    finally:  # no garbled host left for the next scrape in this Redis
        redis_client().delete(HOST_KEY + host)
        redis_client().zrem(HOSTS_KEY, host)
