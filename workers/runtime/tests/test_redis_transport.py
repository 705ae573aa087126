"""The atomic-fetch Redis transport against a real Redis, next to kombu's stock one."""

import json
import select
from collections.abc import Callable, Iterator
from time import monotonic

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Queue
from kombu.asynchronous import Hub
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from config.celery import app
from tests.faults.servers import PrivateRedis
from tests.fixtures import PRIVATE_BROKER, publish_task, wait_for
from workers.runtime import redis_transport

TRANSPORT_DB = 11  # a Redis database of these tests' own
URL = f"redis://127.0.0.1:6379/{TRANSPORT_DB}"
STOCK = "kombu.transport.redis:Transport"  # by path: the app claims the "redis" scheme
ATOMIC = "workers.runtime.redis_transport:Transport"
QUEUE = Queue("rt", Exchange("rt"), routing_key="rt")


@pytest.fixture
def store() -> redis.Redis:
    client = redis.Redis.from_url(URL)
    client.flushdb()
    return client


def connect(transport: str, **options) -> Connection:
    return Connection(URL, transport=transport,
                      transport_options={"visibility_timeout": 1, **options})


def publish(connection: Connection, body: dict, **options) -> None:
    with connection.Producer() as producer:
        producer.publish(body, exchange=QUEUE.exchange, routing_key="rt", declare=[QUEUE],
                         serializer="json", **options)


def test_the_app_uses_it_for_a_redis_broker():
    with app.connection_for_read() as connection:
        assert isinstance(connection.transport, redis_transport.Transport)


def test_a_restore_lock_a_redis_crash_brings_back_lapses_within_seconds(store):
    """A worker holds the restore lock for a pass; if Redis dies then, the AOF brings the
    lock back with its expiry, and until it lapses no worker restores a single message."""
    options = app.conf.broker_transport_options
    with Connection(URL, transport=ATOMIC, transport_options=options) as connection:
        qos = connection.default_channel.qos
        with kombu_redis.Mutex(store, qos.unacked_mutex_key, qos.unacked_mutex_expire):
            held_for = store.pttl(qos.unacked_mutex_key) / 1000
    assert 0 < held_for <= 30 < options["visibility_timeout"]


def fetch_then_drop(transport: str) -> None:
    """Start a consumer's fetch and lose the connection once Redis has answered, before
    the answer is read: a worker killed between the fetch and the delivery."""
    with connect(transport) as connection:
        channel = connection.default_channel
        channel.basic_consume(QUEUE.name, no_ack=False, callback=lambda message: None,
                              consumer_tag="rt")
        connection.transport.cycle._register_BRPOP(channel)  # sends the fetch (or BRPOP)
        sock = channel.client.connection._sock
        select.select([sock], [], [], 10)
        channel.client.connection.disconnect()


@pytest.mark.parametrize(("transport", "restored"), [(ATOMIC, True), (STOCK, False)])
def test_a_fetch_lost_before_delivery_is_restored_after_the_visibility_timeout(
        store, transport, restored):
    with connect(transport) as connection:
        publish(connection, {"n": 1})

    fetch_then_drop(transport)

    assert store.llen("rt") == 0  # it was taken
    with connect(transport) as connection:
        qos = connection.default_channel.qos

        def back_in_the_queue() -> bool:
            qos.restore_visible(num=10, interval=1)
            return store.llen("rt") == 1

        if restored:
            wait_for(back_in_the_queue, what="the visibility timeout to restore it")
        else:  # kombu#305: nothing points at the message any more
            assert store.hlen("unacked") == 0
            assert not back_in_the_queue()


def test_unacked_records_match_what_kombus_own_append_writes(store):
    with connect(STOCK) as connection:
        publish(connection, {"n": 1})
        stock = connection.default_channel.basic_get(QUEUE.name)
        written_by_kombu = store.hget("unacked", stock.delivery_tag)
    store.flushdb()
    with connect(ATOMIC) as connection:
        publish(connection, {"n": 1})
        atomic = connection.default_channel.basic_get(QUEUE.name)
        written_by_script = store.hget("unacked", atomic.delivery_tag)
        assert store.zscore("unacked_index", atomic.delivery_tag) is not None

    kombu_message, *kombu_route = kombu_redis.loads(written_by_kombu)
    script_message, *script_route = kombu_redis.loads(written_by_script)
    for message in (kombu_message, script_message):
        message["properties"].pop("delivery_tag")
        message["headers"] = message["body"] = None
    assert (script_message, script_route) == (kombu_message, kombu_route)


@pytest.fixture
def consumed() -> list:
    received: list = []
    return received


def drain(connection: Connection, *, no_ack: bool, received: list) -> None:
    with connection.Consumer(QUEUE, no_ack=no_ack, callbacks=[
            lambda body, message: received.append(message)]):
        wait_for(lambda: _drained(connection) or received, what="a delivery")


def _drained(connection: Connection) -> bool:
    try:
        connection.drain_events(timeout=0.2)
    except TimeoutError:
        return False
    return True


def test_acked_consumers_are_recorded_until_the_ack_and_no_ack_ones_never(store, consumed):
    with connect(ATOMIC) as connection:
        publish(connection, {"n": 1})
        drain(connection, no_ack=False, received=consumed)
        assert store.hlen("unacked") == store.zcard("unacked_index") == 1
        consumed[0].ack()
        assert store.hlen("unacked") == store.zcard("unacked_index") == 0

        publish(connection, {"n": 2})
        consumed.clear()
        drain(connection, no_ack=True, received=consumed)  # as pidbox replies are consumed
        assert consumed[0].payload == {"n": 2}
        assert store.hlen("unacked") == 0


def test_a_message_cjson_cannot_decode_is_still_recorded_until_the_ack(store, consumed):
    """JSON with a lone surrogate ("\\ud800", from any header or repr holding one) is valid
    to Python but not to the fetch script's cjson: the script could not write the unacked
    records, and the worker took the message as recorded. A worker lost while running it
    then lost the message: nothing would bring it back."""
    with connect(ATOMIC) as connection:
        publish(connection, {"n": 1}, headers={"note": "lone \ud800"})
        drain(connection, no_ack=False, received=consumed)
        assert consumed[0].headers == {"note": "lone \ud800"}
        assert store.hlen("unacked") == store.zcard("unacked_index") == 1
        consumed[0].ack()
        assert store.hlen("unacked") == store.zcard("unacked_index") == 0


def test_priority_steps_and_the_global_key_prefix_are_respected(store, consumed):
    with connect(ATOMIC, global_keyprefix="tenant:") as connection:
        publish(connection, {"n": 9}, priority=9)
        drain(connection, no_ack=False, received=consumed)
        assert consumed[0].payload == {"n": 9}
        assert store.hlen("tenant:unacked") == 1
        assert store.hlen("unacked") == 0
        consumed[0].reject(requeue=True)
        assert store.llen("tenant:rt\x06\x169") + store.llen("tenant:rt") == 1


def test_a_higher_priority_is_fetched_first_and_ordinary_messages_last(store, consumed):
    """As on RabbitMQ (kombu's stock Redis transport fetches 0, ordinary work, first)."""
    sent = [None, 3, 9, None, 6, 9]
    with connect(ATOMIC) as connection:
        for n, priority in enumerate(sent):
            publish(connection, {"n": n}, **({"priority": priority} if priority else {}))
        with connection.Consumer(QUEUE, no_ack=True, callbacks=[
                lambda body, message: consumed.append(body["n"])]):
            wait_for(lambda: _drained(connection) and len(consumed) == len(sent),
                     what="every message")
    assert consumed == [2, 5, 4, 1, 0, 3]  # 9, 9, 6, 3, then ordinary; each level in order


def test_a_queue_item_that_is_not_a_kombu_message_is_dropped_not_fatal(store, consumed,
                                                                       caplog):
    with connect(ATOMIC) as connection:
        connection.default_channel.queue_declare(QUEUE.name)
        store.lpush("rt", b"\xff not json")
        publish(connection, {"n": 1})
        drain(connection, no_ack=False, received=consumed)

    assert consumed[0].payload == {"n": 1}
    assert "not a kombu message" in caplog.text


def test_a_channel_whose_connection_is_gone_fails_as_a_lost_connection(store):
    """Redis died under the worker: a late ack, or the close handing back deliveries, is
    a connection error the worker logs (kombu's AttributeError stopped the whole worker),
    and the message comes back from its unacked record."""
    connection = connect(ATOMIC)
    publish(connection, {"n": 1})
    publish(connection, {"n": 2})
    channel = connection.default_channel
    finished = channel.basic_get(QUEUE.name)
    assert channel.basic_get(QUEUE.name) is not None  # still running when the close comes
    channel._pool = None  # what a dropped connection leaves behind
    connection.transport.client = None

    with pytest.raises(redis.ConnectionError):
        finished.ack()
    with pytest.raises(redis.ConnectionError):
        channel.close()  # handing back the other delivery

    assert store.hlen("unacked") == 2
    with connect(ATOMIC) as again:
        qos = again.default_channel.qos
        wait_for(lambda: qos.restore_visible(num=10, interval=1) or store.llen("rt") == 2,
                 what="the visibility timeout to restore both")


def test_an_ack_that_fails_because_redis_died_gives_the_credit_back_and_reconnects(tmp_path):
    """Else the consumer stops polling, never sees the lost connection, never reconnects;
    and since Celery only logs a failed ack, the next poll raises the error instead, so
    the consumer reconnects rather than wait on the dead socket."""
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        with Connection(server.url, transport=ATOMIC,
                        transport_options={"visibility_timeout": 1}) as connection:
            publish(connection, {"n": 1})
            channel = connection.default_channel
            channel.basic_qos(prefetch_count=1)
            message = channel.basic_get(QUEUE.name)
            assert not channel.qos.can_consume()

            server.kill()
            with pytest.raises(redis.ConnectionError):
                message.ack()

            assert virtual.QoS.can_consume(channel.qos)  # the credit is back
            with pytest.raises(redis.ConnectionError):
                channel.qos.can_consume()  # the poller's next turn: reconnect
        server.start()  # the append-only file kept the unacked record
        with Connection(server.url, transport=ATOMIC,
                        transport_options={"visibility_timeout": 1}) as again:
            qos = again.default_channel.qos
            back = redis.Redis(port=server.port)
            wait_for(lambda: qos.restore_visible(num=10, interval=1) or back.llen("rt") == 1,
                     what="the visibility timeout to restore it")
    finally:
        server.kill()


def test_a_fetch_left_without_a_reply_counts_as_a_lost_connection():
    """A dead or orphaned poll socket never answers; a live Redis answers within
    `fetch_wait`. Overdue, the poller's next turn raises and the worker reconnects."""
    with Connection(URL, transport=ATOMIC,
                    transport_options={"fetch_overdue": 5}) as connection:
        channel = connection.default_channel
        assert channel.qos.can_consume()
        channel._in_poll = object()  # the connection a fetch was sent on
        channel._brpop_sent_at = monotonic() - 4
        assert channel.qos.can_consume()  # waiting, not yet overdue
        channel._brpop_sent_at = monotonic() - 6
        with pytest.raises(redis.ConnectionError, match="no reply to the fetch"):
            channel.qos.can_consume()
        channel._in_poll = None


def test_a_channel_sends_its_commands_through_one_client_until_its_pool_is_reset(store):
    with connect(ATOMIC) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        publish(connection, {"n": 1})
        with channel.conn_or_acquire() as client:
            assert client is first
        channel._pool = None  # what kombu does when it drops its connections
        with channel.conn_or_acquire() as fresh:
            assert fresh is not first
            assert fresh.connection_pool is channel.pool
        publish(connection, {"n": 2})
    assert store.llen("rt") == 2


def test_a_body_its_encoding_cannot_decode_is_a_dead_letter_not_a_dead_worker(celery_process):
    """A queue item claiming a base64 body that is not base64 raised in the worker's event
    loop: "Unrecoverable error", the worker stopped, and the item, unacknowledged, came
    back to stop the next one. Now it is parked like any poison message, and the worker
    goes on with the next job."""
    from workers.dead_letters.models import DeadLetter

    broken = json.dumps({
        "body": "not base64 !!", "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "tests.tasks.log_line", "id": "poison-base64", "lang": "py"},
        "properties": {"delivery_tag": "poison-base64", "body_encoding": "base64",
                       "delivery_info": {"exchange": "", "routing_key": "critical"}}})
    redis.Redis.from_url(PRIVATE_BROKER).lpush("critical", broken)
    log = celery_process("worker")
    wait_for(lambda: DeadLetter.objects.filter(task_id="poison-base64").exists(),
             what="the undecodable message to be dead-lettered")
    after = publish_task(PRIVATE_BROKER, "tests.tasks.log_line", "still-consuming")
    wait_for(lambda: f"Task tests.tasks.log_line[{after}] succeeded" in log.read_text(),
             what="the worker to run the next job")
    assert "Unrecoverable error" not in log.read_text()


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = Hub()
    yield loop
    loop.close()


def turn_until(loop: Iterator[None], condition: Callable[[], object], *, what: str) -> None:
    """Run the event loop, a turn at a time, until `condition` holds."""
    wait_for(lambda: next(loop) or condition(), what=what)


def consume_in_loop(connection: Connection, hub: Hub,
                    received: list) -> tuple[Iterator[None], Consumer]:
    """The connection's default channel consuming QUEUE one message at a time in `hub`'s
    loop, as a worker's does; returns once the first message is in `received`."""
    connection.register_with_event_loop(hub)
    connection.default_channel.basic_qos(prefetch_count=1)
    loop = hub.create_loop()
    consumer = connection.Consumer(QUEUE, channel=connection.default_channel, callbacks=[
        lambda body, message: received.append(message)])
    consumer.consume()
    turn_until(loop, lambda: received, what="the first delivery")
    return loop, consumer


def test_in_a_worker_loop_an_ack_rides_on_the_next_fetch_or_the_timer_or_the_close(
        store, hub):
    """The ack's own round trip was a quarter of a worker's main process in a drain. In
    the event loop the ack gives its credit back at once and its record goes with the
    fetch that takes the next message; with no fetch coming (the consumer cancelled), the
    transport's timer sends it; a closing channel sends what is left."""
    received: list = []
    with connect(ATOMIC) as connection:
        for n in range(3):
            publish(connection, {"n": n})
        channel = connection.default_channel
        loop, consumer = consume_in_loop(connection, hub, received)
        first = received[0]
        assert store.hexists("unacked", first.delivery_tag)

        first.ack()
        assert channel.qos.can_consume()  # the credit is back at once...
        assert store.hexists("unacked", first.delivery_tag)  # ...the record is not yet
        turn_until(loop, lambda: len(received) == 2, what="the second delivery")
        assert not store.hexists("unacked", first.delivery_tag)  # gone with that fetch
        assert not store.zscore("unacked_index", first.delivery_tag)

        consumer.cancel()  # no fetch will follow this ack
        received[1].ack()
        turn_until(loop, lambda: store.hlen("unacked") == 0, what="the timer to send the ack")
        assert store.zcard("unacked_index") == 0

        third = channel.basic_get(QUEUE.name)
        assert store.hexists("unacked", third.delivery_tag)
        third.ack()
    assert store.hlen("unacked") == store.zcard("unacked_index") == 0  # sent at the close
    assert store.llen("rt") == 0  # and nothing handed back


def test_a_push_goes_with_the_next_ack_in_the_loop_and_at_once_outside_it(store, hub):
    """What a successful replay's note rides on (workers/runtime/request.py): in the event
    loop the push waits for the ack's round trip, the fetch's or the timer's; the two are
    one step. Elsewhere it is sent at once."""
    received: list = []
    with connect(ATOMIC) as connection:
        publish(connection, {"n": 1})
        publish(connection, {"n": 2})
        channel = connection.default_channel
        channel.push_with_ack("notes", "outside")
        assert store.lrange("notes", 0, -1) == [b"outside"]

        loop, consumer = consume_in_loop(connection, hub, received)
        channel.push_with_ack("notes", "with the fetch")
        received[0].ack()
        assert store.llen("notes") == 1
        turn_until(loop, lambda: len(received) == 2, what="the second delivery")
        assert store.lrange("notes", 0, -1) == [b"outside", b"with the fetch"]
        assert not store.hexists("unacked", received[0].delivery_tag)

        consumer.cancel()
        channel.push_with_ack("notes", "with the timer")
        received[1].ack()
        turn_until(loop, lambda: store.llen("notes") == 3, what="the timer")
        assert store.hlen("unacked") == 0
