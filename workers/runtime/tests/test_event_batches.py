"""The event-batch bootstep: a batch may hold a flush interval's worth of events."""

from types import SimpleNamespace

from config.celery import app
from workers.runtime.event_batches import EVENT_BATCH_LIMIT, EventBatchLimit


def test_each_new_event_dispatcher_takes_batches_of_a_flush_interval():
    assert EventBatchLimit in app.steps["consumer"]
    with app.connection_for_write() as connection:
        consumer = SimpleNamespace(event_dispatcher=app.events.Dispatcher(connection))
        EventBatchLimit(consumer).start(consumer)

    assert consumer.event_dispatcher.buffer_limit == EVENT_BATCH_LIMIT
