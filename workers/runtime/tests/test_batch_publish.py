"""The batch publisher: Celery's own messages, sent together, on Redis and on RabbitMQ."""

import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kombu import Exchange, Message, Queue
from kombu.exceptions import OperationalError

from config.celery import app
from workers.core.headers import CORRELATION_HEADER, ENQUEUED_AT_HEADER
from workers.runtime.batch_publish import BATCH_COMMANDS, BatchSender, batch_publishing

# Set per message where it is sent, or by the channel: never equal between two sends.
PER_SEND = {"id", "root_id", "task_id", "correlation_id", "delivery_tag", ENQUEUED_AT_HEADER,
            CORRELATION_HEADER}

pytestmark = [pytest.mark.broker, pytest.mark.django_db]  # run again on RabbitMQ


@pytest.fixture
def queue_name(test_redis):
    """A queue made as the app's are (on RabbitMQ a quorum queue on a topic exchange) that
    no worker consumes, removed afterwards."""
    name = f"batch-check-{uuid.uuid4().hex[:8]}"
    bulk = app.amqp.queues["bulk"]
    queue = app.amqp.queues.add(Queue(name, Exchange(name, type=bulk.exchange.type),
                                      routing_key=name, queue_arguments=bulk.queue_arguments))
    with app.connection_for_write() as connection:
        queue(connection.default_channel).declare()
    yield name
    with app.connection_for_write() as connection:
        app.amqp.queues.pop(name)(connection.default_channel).delete()


def drained(name: str) -> list[Message]:
    with app.connection_for_read() as connection:
        queue = app.amqp.queues[name](connection.default_channel)
        messages = []
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message)
        return messages


def call(name: str, n: int) -> dict:
    """The n-th of a mix of calls: three priorities, some with an ETA (not on RabbitMQ,
    where an ETA goes through the delay exchanges, bound for consumed queues only)."""
    eta = (datetime.now(UTC) + timedelta(seconds=30)) if n % 2 and not rabbitmq() else None
    return {"args": [f"key-{n}"], "kwargs": {"password": "hunter2", "n": n}, "queue": name,
            "task_id": str(uuid.uuid4()), "priority": n % 3 or None, "eta": eta,
            "headers": {"x-source": "batch-test"}}


def send(name: str, n: int, producer) -> str:
    """One call through `send_task`, the way every other publish goes."""
    options = call(name, n)
    return app.send_task("tests.tasks.record_effect", producer=producer, ignore_result=True,
                         retry=False, **options).id


def send_batched(name: str, n: int, batch) -> str:
    options = call(name, n)
    batch.send("tests.tasks.record_effect", **options)
    return options["task_id"]


def comparable(message: Message) -> dict:
    """Every field a worker, Flower or the transport reads, less what differs per send."""
    properties = {key: value for key, value in message.properties.items()
                  if key not in PER_SEND | {"delivery_info", "application_headers"}}
    delivery = {key: value for key, value in message.delivery_info.items()
                if key not in PER_SEND}
    headers = {key: value for key, value in message.headers.items() if key not in PER_SEND}
    eta = headers.pop("eta", None)
    return {"headers": headers, "properties": properties, "delivery": delivery,
            "body": message.decode(), "content_type": message.content_type,
            "content_encoding": message.content_encoding, "has_eta": eta is not None,
            "eta_soon": eta is None or datetime.fromisoformat(eta) - datetime.now(UTC)
            < timedelta(seconds=31)}


def sent_one_by_one(name: str) -> list[Message]:
    app.finalize(auto=True)  # both ways know the task's own options (its time limits)
    with app.producer_or_acquire() as producer:
        one_by_one = [send(name, n, producer) for n in range(12)]
    singles = drained(name)
    assert sorted(m.headers["id"] for m in singles) == sorted(one_by_one)
    return singles


def assert_the_same_messages(together: list[Message], batched: list[str],
                             singles: list[Message]) -> None:
    assert sorted(m.headers["id"] for m in together) == sorted(batched)
    by_key = {m.decode()[0][0]: m for m in singles}
    for message in together:
        assert comparable(message) == comparable(by_key[message.decode()[0][0]])
    assert all("hunter2" not in m.headers["kwargsrepr"] for m in together)
    assert len({m.headers[ENQUEUED_AT_HEADER] for m in together}) > 1  # stamped each


def test_a_batch_holds_the_very_messages_send_task_sends_one_by_one(queue_name):
    singles = sent_one_by_one(queue_name)
    with batch_publishing(app=app) as batch:  # the first of each kind, then the others
        batched = [send_batched(queue_name, n, batch) for n in range(12)]
        if not rabbitmq():  # RabbitMQ has them already: the block waits for its confirms
            assert drained(queue_name) == []  # Redis: nothing is sent before the block ends
    assert_the_same_messages(drained(queue_name), batched, singles)


def test_batches_of_one_send_what_send_task_sends_on_decisions_kept_from_before(
        queue_name, monkeypatch):
    """The outbox publishes each transaction's jobs as a batch of their own: the later
    batches of a thread reuse what send_task decided in the earlier ones."""
    singles = sent_one_by_one(queue_name)
    whole_way = []
    send_task_way = BatchSender._send_task

    def counted(self, name, **options):
        whole_way.append(name)
        return send_task_way(self, name, **options)

    monkeypatch.setattr(BatchSender, "_send_task", counted)
    batched = []
    for n in range(12):
        with batch_publishing(app=app) as batch:
            batched.append(send_batched(queue_name, n, batch))
    assert_the_same_messages(drained(queue_name), batched, singles)
    with_eta = sum(1 for n in range(12) if call(queue_name, n)["eta"] is not None)
    assert len(whole_way) == with_eta + 3  # the first of each priority, and every ETA


def test_a_later_batch_declares_its_queue_where_its_connection_has_not(queue_name,
                                                                      monkeypatch):
    """A batch reusing what an earlier one decided still declares the kind's queue on a
    connection kombu has not declared it on (a new one, after a reconnect): published
    without the declaration, a message to the queue's exchange may have no binding to
    follow. A connection that has declared it is not asked again."""
    app.finalize(auto=True)  # registering the tasks later would start the decisions anew
    with batch_publishing(app=app) as batch:  # the whole way, decisions kept
        send_batched(queue_name, 0, batch)
    drained(queue_name)
    declared = []
    declare = Queue.declare

    def counted(self, *args, **kwargs):
        declared.append(self.name)
        return declare(self, *args, **kwargs)

    monkeypatch.setattr(Queue, "declare", counted)
    sent = []
    with batch_publishing(app=app) as batch:
        batch.producer.channel.connection.client.declared_entities.clear()
        sent.append(send_batched(queue_name, 6, batch))  # the same kind as the first
    assert declared == [queue_name]
    with batch_publishing(app=app) as batch:
        sent.append(send_batched(queue_name, 12, batch))
    assert declared == [queue_name]
    assert [m.headers["id"] for m in drained(queue_name)] == sent


@app.task(bind=True, name="tests.batch_publish.publish_from_a_task")
def publish_from_a_task(self, queue: str) -> None:
    with batch_publishing(app=app) as batch:
        send_batched(queue, 0, batch)


def test_a_batch_sent_from_a_task_names_that_task_as_its_parent(queue_name):
    """Decisions kept outside a task, or in another task, are not reused: `send_task`
    takes the parent and root ids from the task being run."""
    with batch_publishing(app=app) as batch:
        send_batched(queue_name, 0, batch)
    first = publish_from_a_task.apply(args=[queue_name])
    second = publish_from_a_task.apply(args=[queue_name])

    outside, *from_tasks = drained(queue_name)
    assert outside.headers["parent_id"] is None
    assert [m.headers["parent_id"] for m in from_tasks] == [first.id, second.id]
    assert [m.headers["root_id"] for m in from_tasks] == [first.id, second.id]


def test_more_messages_than_one_pipeline_holds_all_arrive(queue_name):
    with batch_publishing(app=app) as batch:
        sent = {send_batched(queue_name, n, batch) for n in range(BATCH_COMMANDS + 7)}
    assert {m.headers["id"] for m in drained(queue_name)} == sent


def rabbitmq() -> bool:
    return app.conf.broker_url.startswith("amqp")


def test_an_error_inside_the_block_leaves_what_was_not_yet_sent_unsent(queue_name):
    """On Redis nothing before the block ends; on RabbitMQ each publish has gone out."""
    def half_way() -> None:
        with batch_publishing(app=app) as batch:
            send_batched(queue_name, 1, batch)
            raise RuntimeError("the caller failed half-way")

    with pytest.raises(RuntimeError):
        half_way()
    assert len(drained(queue_name)) == (1 if rabbitmq() else 0)



def test_a_connection_that_died_in_the_pool_fails_one_batch_as_an_absent_broker(queue_name):
    """A RabbitMQ node that died under a pooled connection: the batch raises what callers
    handle for a broker that is away (the outbox leaves its rows to the sweeper), and the
    next batch connects anew."""
    if not rabbitmq():
        pytest.skip("redis-py reconnects on the next command by itself")
    with batch_publishing(app=app) as batch:  # the pool now holds a live connection
        send_batched(queue_name, 0, batch)
    with app.producer_or_acquire() as producer:  # the same one: the pool is last in, first out
        producer.connection.connection.sock.shutdown(socket.SHUT_RDWR)

    with pytest.raises(OperationalError), batch_publishing(app=app) as batch:
        send_batched(queue_name, 1, batch)
    with batch_publishing(app=app) as batch:
        after = send_batched(queue_name, 2, batch)

    assert [m.headers["id"] for m in drained(queue_name)][-1] == after


def test_reprs_a_caller_gives_as_headers_are_redacted_too(queue_name):
    """A caller's `headers={"argsrepr": …}` replaces the repr Celery's builder redacted;
    what the message shows of the call is redacted again at publish, one by one and in a
    batch."""
    headers = {"argsrepr": "['alice', 'password=hunter2-given']",
               "kwargsrepr": {"api_key": "sk_live_notshownatall"}}
    with app.producer_or_acquire() as producer:
        app.send_task("tests.tasks.record_effect", args=["k"], queue=queue_name,
                      producer=producer, headers=headers, ignore_result=True, retry=False)
    with batch_publishing(app=app) as batch:
        for n in range(2):
            batch.send("tests.tasks.record_effect", args=[f"k{n}"], kwargs={},
                       queue=queue_name, task_id=str(uuid.uuid4()), headers=headers,
                       eta=None, priority=None)
    messages = drained(queue_name)

    assert len(messages) == 3
    for message in messages:
        assert message.headers["argsrepr"] == "['alice', 'password=[redacted]']"
        assert message.headers["kwargsrepr"] == "[redacted]"
