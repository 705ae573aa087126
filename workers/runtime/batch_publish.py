"""Publishing many task messages in one go: the outbox's batches and dead-letter requeues.

The messages are Celery's own. The first call of each kind (task, queue, priority) goes
through `send_task`, which builds, stamps, redacts and routes it as any other
(workers/runtime/task_messages.py, the `before_task_publish` handlers); what Celery
decided for it is recorded on the way (the arguments its message builder got, and what
it handed kombu to publish). The other calls of that kind reuse those decisions: each
message is still built by Celery's builder (its own id, arguments, redacted reprs), the
publish signals still fire for it, and it is handed to kombu at the point send_task's
publish reaches, so a batch skips only the routing and option merging that would come
out the same (about two thirds of a send; docs/performance.md). A call with an ETA always
takes the whole way (on RabbitMQ it is routed by its delay).

The decisions are kept beyond one batch, for the next batches of the same thread in the
same context (`_kept_decisions`): the outbox publishes each committed transaction's jobs
as a batch of their own, often of one, which would otherwise always take the whole way.
What `send_task` takes from where it is called (the calling task as parent and root, the
thread's reply-to, the process's origin) is part of that context, and each batch still
declares the queue of each kind on its own connection before its first message.

Only the sending is grouped:

- On Redis, kombu's publish batch queues the LPUSHes on one pipeline, sent every
  BATCH_COMMANDS commands and when the block ends: one round trip instead of one per
  message.
- On RabbitMQ, the messages go out on a channel of their own in confirm mode without
  waiting for each confirm (which is what the app's `confirm_publish` does per message);
  the block ends once the broker has confirmed every one of them.

Either way a message counts as sent only when the block has ended without an error. An
error means some of the batch may have reached the broker: a caller that sends them
again sends those twice, which the platform allows (its tasks are effect-once or
idempotent), never none. The kombu and py-amqp names used here are checked by
workers/runtime/tests/test_celery_internals.py.
"""

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from time import monotonic
from typing import Any

from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from kombu import Producer
from kombu.exceptions import BatchPublishError, OperationalError
from kombu.serialization import dumps
from kombu.utils.encoding import bytes_to_str

#: Redis commands queued before the pipeline is sent (one LPUSH a message).
BATCH_COMMANDS = 1000
#: Seconds to wait for RabbitMQ to confirm the messages of a batch.
CONFIRM_TIMEOUT = 30.0


@contextmanager
def batch_publishing(*, app: Celery, replicas: int = 0,
                     replica_timeout_ms: int = 1000) -> Iterator["BatchSender"]:
    """A sender whose messages are sent together when the block ends; raises kombu's
    OperationalError if the broker may not hold them all, or (Redis, `replicas` > 0)
    if fewer than `replicas` of its replicas hold them `replica_timeout_ms` later."""
    with app.producer_or_acquire() as producer:
        channel = producer.channel  # the producer's own answer reads the transport's
        if getattr(channel, "supports_batch_publish", False):
            if replicas > 0:
                _require_replicas(channel, replicas=replicas)
            try:
                with producer.batch(max_size=BATCH_COMMANDS):
                    yield BatchSender(app=app, producer=producer)
            except BatchPublishError as error:  # what callers already handle for a publish
                raise OperationalError(str(error)) from error
            except channel.connection_errors as error:  # a declare that met a dead Redis
                raise OperationalError(f"Redis did not take a batch: {error!r}") from error
            if replicas > 0:
                _await_replicas(channel, replicas=replicas, timeout_ms=replica_timeout_ms)
        elif producer.connection.transport.driver_type == "amqp":  # py-amqp, RabbitMQ
            with _confirmed_together(producer) as batch_producer:
                yield BatchSender(app=app, producer=batch_producer)
        else:  # a transport with neither: one by one, as send_task does
            yield BatchSender(app=app, producer=producer)


#: While a batch records its first call of a kind: what `send_task` gave Celery's message
#: builder (workers/runtime/task_messages.py appends to it).
built = threading.local()


@dataclass(frozen=True)
class _Decided:
    """What send_task decided for the first call of a kind, kept for the others."""
    builder_arguments: tuple[Any, ...]  # create_task_message's, after the call's own
    builder_options: dict[str, Any]
    serializer: str
    publish: dict[str, Any]  # kombu's `Producer._publish` arguments but the message's
    transport_properties: dict[str, Any]  # properties added on the way (delivery mode)
    signal: dict[str, Any]  # what the publish signals get besides the message


#: A call's kind: its task, queue and priority.
_Kind = tuple[str, str, int | None]

#: Kinds whose decisions a thread keeps at most (task names come from stored rows too).
KEPT_KINDS = 256

#: Per thread: the context the kept decisions were made in, and the decisions.
_kept = threading.local()


def _kept_decisions(*, app: Celery, producer: Producer) -> dict[_Kind, _Decided]:
    """The decisions this thread keeps for batches sent from where this one is.

    Everything `send_task` decides beyond the call's own values comes from the app's
    configuration, the tasks it has registered (their time limits and expiry), the
    broker's transport, the thread (its reply-to), the process (the origin) and the task
    being run, if any (parent and root ids, an inherited priority). A batch sent from
    another context of these starts anew.
    """
    parent = app.current_worker_task
    context = (os.getpid(), id(app), len(app._tasks), type(producer.channel),
               None if parent is None else (parent.request.id, parent.request.root_id))
    if getattr(_kept, "context", None) != context:
        _kept.context, _kept.decisions = context, {}
    decisions: dict[_Kind, _Decided] = _kept.decisions
    return decisions


class BatchSender:
    """Sends task calls on a batch producer (`batch_publishing`)."""

    def __init__(self, *, app: Celery, producer: Producer) -> None:
        self.app = app
        self.producer = producer
        self._decided = _kept_decisions(app=app, producer=producer)
        self._declared: set[_Kind] = set()  # kinds whose queue this batch has declared

    def send(self, name: str, *, args: list[Any], kwargs: dict[str, Any], queue: str,
             task_id: str, headers: Mapping[str, Any], eta: datetime | None,
             priority: int | None) -> None:
        """Send one call (its result ignored, no publish retry: the batch is the unit)."""
        kind = (name, queue, priority)
        decided = self._decided.get(kind)
        if decided is None or eta is not None:
            recorded = self._send_task(name, args=args, kwargs=kwargs, queue=queue,
                                       task_id=task_id, headers=headers, eta=eta,
                                       priority=priority)
            self._declared.add(kind)  # send_task declared it on this producer
            if eta is None and recorded is not None:
                if len(self._decided) >= KEPT_KINDS:
                    self._decided.clear()
                self._decided[kind] = recorded
            return
        # Declared before its first message on this batch's connection, as send_task's
        # publish would (kombu remembers what each connection declared: a lookup).
        declare = kind not in self._declared
        self._declared.add(kind)
        self._send_decided(decided, name=name, args=args, kwargs=kwargs, task_id=task_id,
                           headers=headers, declare=declare)

    def _send_task(self, name: str, *, args: list[Any], kwargs: dict[str, Any], queue: str,
                   task_id: str, headers: Mapping[str, Any], eta: datetime | None,
                   priority: int | None) -> _Decided | None:
        """The whole way, recording what Celery decided (None if it went another way)."""
        producer = self.producer
        seen: dict[str, Any] = {}

        def publish(body: Any, **options: Any) -> Any:
            seen["serializer"] = options.get("serializer")
            seen["signal"] = {key: options.get(key) for key in (
                "exchange", "routing_key", "declare", "retry_policy")}
            return type(producer).publish(producer, body, **options)

        def transport(body: Any, priority: Any, content_type: Any, content_encoding: Any,
                      headers: Any, properties: Any, *rest: Any) -> Any:
            seen["publish"] = dict(zip(_PUBLISH_REST, (priority, *rest), strict=True))
            seen["properties"] = dict(properties)
            return type(producer)._publish(producer, body, priority, content_type,
                                           content_encoding, headers, properties, *rest)

        built.calls = []
        producer.publish = publish  # type: ignore[method-assign,assignment]
        producer._publish = transport  # type: ignore[method-assign,assignment]
        try:
            self.app.send_task(name, args=args, kwargs=kwargs, queue=queue, task_id=task_id,
                               headers=dict(headers), eta=eta, priority=priority,
                               ignore_result=True, producer=producer, retry=False)
            calls = built.calls
        finally:
            del built.calls, producer.publish, producer._publish
        if len(calls) != 1 or set(seen) != {"serializer", "signal", "publish", "properties"}:
            return None
        arguments, options, message_properties = calls[0]
        return _Decided(
            builder_arguments=arguments, builder_options=options,
            serializer=seen["serializer"], publish=seen["publish"],
            transport_properties={key: value for key, value in seen["properties"].items()
                                  if key not in message_properties},
            signal=seen["signal"])

    def _send_decided(self, decided: _Decided, *, name: str, args: list[Any],
                      kwargs: dict[str, Any], task_id: str, headers: Mapping[str, Any],
                      declare: bool) -> None:
        """What send_task would do for this call, given what it decided for the first;
        with `declare`, its queue declared first as send_task's publish does."""
        message = self.app.amqp.create_task_message(
            task_id, name, args, kwargs, *decided.builder_arguments,
            **decided.builder_options)
        sent_headers, properties, body = message.headers, message.properties, message.body
        sent_headers.update(headers)
        properties.update(decided.transport_properties)
        signal = decided.signal
        before_task_publish.send(sender=name, body=body, headers=sent_headers,
                                 properties=properties, **signal)
        content_type, content_encoding, data = dumps(body, serializer=decided.serializer)
        publish = decided.publish
        to_declare: Any = (_not_declared_yet(publish["declare"], self.producer.channel)
                           if declare and publish["declare"] else [])
        self.producer._publish(
            data, publish["priority"], content_type, content_encoding,  # type: ignore[arg-type]
            sent_headers, properties, *(publish[key] if key != "declare" else to_declare
                                        for key in _PUBLISH_REST[1:]))
        after_task_publish.send(sender=name, body=body, headers=sent_headers,
                                exchange=signal["exchange"], routing_key=signal["routing_key"])


def _not_declared_yet(entities: list[Any], channel: Any) -> list[Any]:
    """The entities kombu has no declaration of in this channel's connection's cache.

    kombu's `maybe_declare` looks in the same cache, but copies each entity (a queue, its
    exchange and bindings) to bind it first, and the copy was a tenth of the publish of a
    one-job outbox batch (docs/performance.md). What is not cached goes to kombu as
    before; so does everything when the channel has lost its connection."""
    if channel.connection is None:
        return entities
    declared = channel.connection.client.declared_entities
    return [entity for entity in entities
            if not (entity.can_cache_declaration and hash(entity) in declared)]


#: The key a replication barrier writes (its value counts the barriers, nothing reads it).
REPLICATION_MARK = "platform:replication-mark"


#: When this thread last saw enough replicas connected (monotonic seconds).
_replicas_seen = threading.local()


def _require_replicas(channel: Any, *, replicas: int) -> None:
    """Raise OperationalError, sending nothing, unless `replicas` replicas are connected
    to the primary (asked at most once a second while they are).

    Without them the wait after the batch could only time out, with the batch already
    queued on the primary: its jobs would run, stay unpublished, and be sent again by
    every sweep until a replica came back, each request waiting out the timeout. Refused
    before sending, they wait for the sweeper once, like jobs during an outage.
    """
    if monotonic() - getattr(_replicas_seen, "at", float("-inf")) < 1.0:
        return
    try:
        with channel.conn_or_acquire() as client:
            role = client.execute_command("ROLE")
    except channel.connection_errors as error:
        raise OperationalError(f"Redis did not answer ROLE: {error!r}") from error
    connected = len(role[2]) if bytes_to_str(role[0]) == "master" else 0
    if connected < replicas:
        raise OperationalError(f"{connected} of {replicas} Redis replica(s) connected to "
                               "the primary: the batch was not sent")
    _replicas_seen.at = monotonic()


def _await_replicas(channel: Any, *, replicas: int, timeout_ms: int) -> None:
    """Return once `replicas` replicas hold everything this Redis had written when the
    batch ended; raise OperationalError if they do not within `timeout_ms`.

    Redis's WAIT waits for the writes of the connection it is sent on, and kombu hands a
    batch's pipeline whichever pooled connection is free; so one write of its own goes
    first on WAIT's connection. Replication is one ordered stream: a replica that holds
    that write holds every write before it, the batch's messages included.
    """
    try:
        with channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.incr(REPLICATION_MARK)
            pipe.wait(replicas, timeout_ms)
            _, acknowledged = pipe.execute()
    except channel.connection_errors as error:
        raise OperationalError(f"Redis did not answer the replication barrier: {error!r}") \
            from error
    if int(acknowledged) < replicas:
        _replicas_seen.at = float("-inf")  # ask again before the next batch
        raise OperationalError(f"the batch was sent, but {acknowledged} of {replicas} Redis "
                               f"replica(s) held it within {timeout_ms} ms")


#: `Producer._publish`'s arguments after the message's own (checked by the internals test).
_PUBLISH_REST = ("priority", "routing_key", "mandatory", "immediate", "exchange", "declare",
                 "timeout", "confirm_timeout", "retry", "retry_policy")


@contextmanager
def _confirmed_together(producer: Producer) -> Iterator[Producer]:
    """A producer on a new confirm-mode channel that does not wait for each confirm.

    Any failure of the connection, from opening the channel to the last confirm, raises
    OperationalError (what callers handle for a broker that is away) and drops the
    connection, so the next batch connects anew, to the next node of a cluster's list.
    Raised as it came, a reset from a node that died under a pooled connection escaped
    the outbox's after-commit publish into the request that had committed.
    """
    connection: Any = producer.connection
    failures = (*connection.connection_errors, *connection.channel_errors,
                OSError)  # a socket's reset or timeout
    channel: Any = None
    try:
        channel = connection.channel()
        channel.confirm_select()
        confirms: list[tuple[int, bool]] = []  # (delivery tag, multiple)
        refused: list[int] = []
        channel.events["basic_ack"].add(lambda tag, multiple: confirms.append((tag, multiple)))
        channel.events["basic_nack"].add(lambda tag, multiple: refused.append(tag))
        publish = channel._basic_publish  # the channel's own publish, which does not wait
        sent = [0]

        def counted(*args: Any, **kwargs: Any) -> Any:
            sent[0] += 1  # a channel's delivery tags number its publishes from 1
            return publish(*args, **kwargs)

        channel.basic_publish = counted
        yield Producer(channel, serializer=producer.serializer,
                       compression=producer.compression, auto_declare=False)
        waiting = set(range(1, sent[0] + 1))
        while True:
            for tag, multiple in confirms:
                waiting = {t for t in waiting if t > tag} if multiple else waiting - {tag}
            confirms.clear()
            if refused or not waiting:
                break
            channel.connection.drain_events(timeout=CONFIRM_TIMEOUT)
    except failures as error:
        channel = None
        connection.collect()
        raise OperationalError(f"RabbitMQ did not take a batch: {error!r}") from error
    finally:
        if channel is not None:
            with contextlib.suppress(*failures):
                channel.close()
    if refused:
        raise OperationalError(f"RabbitMQ refused {len(refused)} message(s) of a batch")
