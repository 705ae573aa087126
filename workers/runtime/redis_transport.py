"""A Redis transport whose fetch cannot lose a message (the `broker_transport` setting).

kombu's Redis transport pops a message with BRPOP and records it as unacknowledged in a
second round trip (`QoS.append`); a worker or Redis killed in between leaves nothing that
points at the message (kombu#305, still open). Here one Lua script pops from the first
non-empty queue key and writes the unacked hash entry and index score exactly as
`QoS.append` writes them, so ack, reject and the visibility-timeout restore are kombu's own.

Lua cannot block. An idle channel therefore waits with `BLMOVE key key RIGHT RIGHT` on the
primary key of its next queue: that moves the oldest message to where it already was,
changing nothing, and returns as soon as there is one; its timeout (`fetch_wait`, 0.1 s)
bounds how late a message on another key (a second queue, a priority step) is seen.

Priorities read as on RabbitMQ: a higher number is more urgent. kombu's Redis transport
has them backwards (0, which every message without a priority also gets, is the most
urgent, so nothing could be put ahead of ordinary work); here the fetch takes the keys of
`priority_steps` from the highest down, and ordinary messages, on the queue's primary key,
come last (workers/core/priorities.py maps Django's priorities onto the steps).

A worker's acks ride on its next fetch. kombu acknowledges with a MULTI/EXEC of its own,
a round trip the worker's event loop waits on for every task (a quarter of the main
process's time in a no-op drain, which that process bounds). In the event loop an ack
gives the delivery's credit back at once and leaves its tag with the channel; the next
fetch script removes the tags' records before it pops, in the same round trip, and a
timer sends what no fetch took (a channel not fetching: cancelled, or shutting down).
A worker killed before then leaves those records, and the visibility timeout brings
the messages back as it brings back a task killed just before its ack: the at-least-once
every platform task already allows (effect-once keys skip the rerun).

Everything here leans on kombu's Redis channel internals; every private name it uses is
checked by workers/runtime/tests/test_celery_internals.py.
"""

import logging
import os
from collections import deque
from queue import Empty
from time import monotonic, time
from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

#: KEYS: the n queue keys in BRPOP's order, the unacked hash and its index, then the keys
#: of the pushes that go with the acks.
#: ARGV[1]: the index score (now); ARGV[2]: n; ARGV[3]: m, the number of acks;
#: ARGV[3 + i]: "1" if KEYS[i] is consumed without acks; then the m delivery tags
#: acknowledged since the last fetch, whose records go first; then the value of each push.
#: Returns {i, item, recorded} or nil; `recorded` is 1 if the script wrote the unacked
#: records. It cannot for an item cjson does not decode: not a kombu message, or one whose
#: JSON holds text cjson refuses (a lone surrogate's "\ud800", which Python writes and
#: reads); kombu's own second round trip records that one (QoS.append).
FETCH_SCRIPT = """
local n, m = tonumber(ARGV[2]), tonumber(ARGV[3])
for j = 4 + n, 3 + n + m do
    redis.call('ZREM', KEYS[n + 2], ARGV[j])
    redis.call('HDEL', KEYS[n + 1], ARGV[j])
end
for k = n + 3, #KEYS do
    redis.call('RPUSH', KEYS[k], ARGV[k + m + 1])
end
for i = 1, n do
    local item = redis.call('RPOP', KEYS[i])
    if item then
        if ARGV[3 + i] ~= '1' then
            local ok, payload = pcall(cjson.decode, item)
            if ok and type(payload) == 'table' and type(payload['properties']) == 'table' then
                local properties = payload['properties']
                local tag = properties['delivery_tag']
                local info = properties['delivery_info']
                if type(tag) == 'string' and type(info) == 'table' then
                    redis.call('ZADD', KEYS[n + 2], ARGV[1], tag)
                    redis.call('HSET', KEYS[n + 1], tag, '[' .. item .. ', ' ..
                        cjson.encode(info['exchange']) .. ', ' ..
                        cjson.encode(info['routing_key']) .. ']')
                    return {i, item, 1}
                end
            end
        end
        return {i, item, 0}
    end
end
return nil
"""


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        """Track the delivery; write the unacked records only if the fetch did not."""
        recorded = self.channel.connection.recorded_tags
        if delivery_tag in recorded:
            recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        """Acknowledge: in a worker's event loop on the next fetch (the module's
        docstring); elsewhere at once, and if Redis is gone, still give the delivery's
        credit back.

        kombu forgets a delivery only once Redis has removed its unacked record. Acks that
        fail while Redis is down (tasks finishing during the outage) then keep the
        channel's prefetch credit used up: the worker stops polling, never notices the
        lost connection and never reconnects. The record, if Redis kept it, brings the
        message back after the visibility timeout (effect-once tasks skip the rerun).
        """
        transport = self.channel.connection  # None once the channel is closed
        if transport is not None and transport.acks_ride_on_fetch:
            virtual.QoS.ack(self, delivery_tag)
            self.channel.acks_pending.append(delivery_tag)
            return
        try:
            super().ack(delivery_tag)
        except self.channel.connection_errors as exc:
            virtual.QoS.ack(self, delivery_tag)
            self.channel.connection_lost = exc
            raise

    def can_consume(self) -> bool:
        """Raise a lost connection that nothing else would report, on the event loop's
        next turn (the poller asks this on every turn; Celery then reconnects as for any
        lost connection).

        A Redis restart can otherwise go unnoticed two ways, each leaving a worker idle
        with messages waiting: an ack meets the lost connection, but Celery only logs a
        failed ack ("Couldn't ack"); or the fetch in flight on the dead poll socket never
        gets its reply.
        """
        channel = self.channel
        if channel.connection_lost is not None:
            raise channel.connection_lost
        waited = monotonic() - (channel._brpop_sent_at or monotonic())
        if channel._in_poll and waited > channel.fetch_overdue:
            # A live Redis answers a fetch at once and a wait within `fetch_wait`. No reply
            # for this long means the poll socket is dead or no longer the one polled (a
            # Redis restart under load left a worker idle for minutes; kombu's own check
            # skips a socket that shows readable, which a closed one does).
            raise RedisConnectionError(f"no reply to the fetch for {waited:.0f} s")
        return bool(super().can_consume())


class Channel(kombu_redis.Channel):
    QoS = QoS

    #: Longest idle wait (seconds) before fetching again without a wake-up.
    fetch_wait = 0.1
    #: Seconds without a reply to a fetch after which the connection counts as lost.
    fetch_overdue = 30.0

    from_transport_options = (*kombu_redis.Channel.from_transport_options, "fetch_wait",
                              "fetch_overdue")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: A connection error an ack met; the next poll raises it (QoS.can_consume).
        self.connection_lost: Exception | None = None
        self._no_ack_queues: set[str] = set()
        self._fetch_next = True
        self._fetch_keys: list[str] = []
        self._command_client: Any = None
        #: Tags acknowledged in the event loop whose records no fetch has removed yet, and
        #: the (key, value) pushes that go with them (deques: a thread pool's threads ack
        #: too).
        self.acks_pending: deque[str] = deque()
        self.pushes_pending: deque[tuple[str, str]] = deque()
        super().__init__(*args, **kwargs)

    def _create_client(self, asynchronous: bool = False) -> Any:
        """One client per channel for commands. kombu builds a new one for every publish
        and ack, with its table of some 170 response callbacks: a fifth of the cost of a
        publish. The pool still hands out the connections, so sharing it is as safe."""
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        client = self._command_client
        if client is None or client.connection_pool is not self.pool:  # pool was reset
            client = self._command_client = super()._create_client()  # type: ignore[misc]
        return client

    @property
    def supports_batch_publish(self) -> bool:
        """kombu turns its publish batches off when redis-py may send a pipeline twice
        (`retry_on_timeout`, which the app sets so that one slow reply does not cost a
        worker its connection). A pipeline sent twice puts its messages twice, as a single
        publish retried after a timeout already does, and the platform's tasks allow that
        (workers/runtime/batch_publish.py): batches are on."""
        return True

    def _next_delivery_tag(self) -> str:
        """128 random bits, as kombu's uuid4 text has: only uniqueness is asked of a tag,
        and building the UUID object cost a batch publish a twentieth of its time."""
        return os.urandom(16).hex()

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        no_ack = kwargs.get("no_ack", args[0] if args else False)
        (self._no_ack_queues.add if no_ack else self._no_ack_queues.discard)(queue)
        return super().basic_consume(queue, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        with self.conn_or_acquire() as client:
            payload = self._fetch(client, queue, record=not no_ack)
            self._maybe_update_queues_expire(client, queue)
        if payload is None:
            return None
        message = self.Message(payload, channel=self)
        if not no_ack:
            self.qos.append(message, str(message.delivery_tag))
        return message

    def _get(self, queue: str) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            payload = self._fetch(client, queue, record=True)
            self._maybe_update_queues_expire(client, queue)
        if payload is None:
            raise Empty()
        return payload

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        if self._fetch_next:
            self._fetch_keys = [self._q_for_pri(queue, pri) for pri in self._urgent_first()
                                for queue in queues]
            command = self._fetch_command(self._fetch_keys,
                                          no_ack=[key.rsplit(self.sep, 1)[0]
                                                  in self._no_ack_queues
                                                  for key in self._fetch_keys])
        else:
            watched = self._prefixed(queues[0])
            command = ["BLMOVE", watched, watched, "RIGHT", "RIGHT", self.fetch_wait]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        self.client.connection.send_command(*command)

    def _brpop_read(self, **options: Any) -> bool:
        fetching = self._fetch_next
        try:
            try:
                reply = self.client.parse_response(
                    self.client.connection, "EVAL" if fetching else "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            # After a fetch that found something, fetch again at once; after an empty
            # one, wait; after a wait (woken or timed out), fetch.
            self._fetch_next = bool(reply) or not fetching
            if not fetching or not reply:
                raise Empty()
            index, item, recorded = reply
            queue = self._fetch_keys[int(index) - 1].rsplit(self.sep, 1)[0]
            payload = self._payload(item, recorded=bool(recorded))
            if payload is None:
                raise Empty()
            self._queue_cycle.rotate(queue)
            self.connection._deliver(payload, queue)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """Refuse, as a lost connection, to build a client for a closed channel.

        When Redis dies under a worker, the channel closes while tasks still run; their
        acks (and the close's own hand-back of delivered messages) then ask this for a new
        client, and kombu's AttributeError on the missing connection stops the whole
        worker ("Unrecoverable error"). As a connection error it is logged and the
        message stays in the unacked set: the visibility timeout brings it back.
        """
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("the broker connection of this channel is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]
        return params

    def _fetch(self, client: Any, queue: str, *, record: bool) -> dict[str, Any] | None:
        keys = [self._q_for_pri(queue, pri) for pri in self._urgent_first()]
        while True:
            reply = client.execute_command(*self._fetch_command(keys,
                                                                no_ack=[not record] * len(keys)))
            if not reply:
                return None
            _, item, recorded = reply
            payload = self._payload(item, recorded=bool(recorded))
            if payload is not None:
                return payload

    def _urgent_first(self) -> list[int]:
        return sorted(self.priority_steps, reverse=True)

    def push_with_ack(self, key: str, value: str) -> None:
        """RPUSH `value` onto `key` (unprefixed: a key of the platform's own) in the round
        trip of the next ack, the delivery's own when called just before it: both happen
        or neither does. Outside an event loop, at once."""
        transport = self.connection
        if transport is not None and transport.acks_ride_on_fetch:
            self.pushes_pending.append((key, value))
            return
        with self.conn_or_acquire() as client:
            client.rpush(key, value)

    def _fetch_command(self, keys: list[str], *, no_ack: list[bool]) -> list[Any]:
        tags, pushes = self._take_pending()
        # EVAL, not EVALSHA: the script cache is empty after a Redis restart.
        return ["EVAL", FETCH_SCRIPT, len(keys) + 2 + len(pushes),
                *(self._prefixed(key) for key in keys),
                self._prefixed(self.unacked_key), self._prefixed(self.unacked_index_key),
                *(key for key, _ in pushes),
                repr(time()), len(keys), len(tags), *("1" if flag else "0" for flag in no_ack),
                *tags, *(value for _, value in pushes)]

    def _take_pending(self) -> tuple[list[str], list[tuple[str, str]]]:
        """The acks and pushes since the last fetch, now on their way. If their round
        trip fails they are not sent again: the acks' records stay, and the visibility
        timeout brings the messages back, as after an ack that fails (a push goes with
        its ack: the rerun pushes it)."""
        tags: list[str] = []
        pushes: list[tuple[str, str]] = []
        while self.acks_pending:
            tags.append(self.acks_pending.popleft())
        while self.pushes_pending:
            pushes.append(self.pushes_pending.popleft())
        return tags, pushes

    def flush_acks(self) -> None:
        """Send the acks and pushes no fetch took, in one transaction.

        Called by the transport's timer and at close. A lost connection found here is
        raised by the next poll (QoS.can_consume), as an ack's would have been.
        """
        tags, pushes = self._take_pending()
        if not tags and not pushes:
            return
        try:
            with self.conn_or_acquire() as client:
                pipe = client.pipeline()
                if tags:
                    pipe.zrem(self.unacked_index_key, *tags).hdel(self.unacked_key, *tags)
                for key, value in pushes:
                    pipe.rpush(key, value)
                pipe.execute()
        except self.connection_errors as exc:
            self.connection_lost = exc
            logger.warning("could not remove the records of %d acknowledged messages (%s); "
                           "the visibility timeout will bring them back", len(tags), exc)

    def close(self) -> None:
        """Send the acks still pending before kombu's close hands back the deliveries."""
        if not self.closed and self.connection is not None:
            self.flush_acks()
        super().close()

    def decode_body(self, body: Any, encoding: str | None = None) -> Any:
        """kombu's, except that a body its declared encoding cannot decode (base64 that is
        not, an encoding kombu does not know) is passed on as it is. kombu raised inside
        the worker's event loop: an unrecoverable error that stopped the worker, and the
        message, left unacknowledged, came back to stop the next one. Passed on, the body
        fails Celery's decode like any poison message and becomes a dead letter."""
        try:
            return super().decode_body(body, encoding)
        except (ValueError, TypeError, AttributeError) as error:  # binascii.Error too
            logger.error("a message body is not %s (%s); passed on undecoded", encoding,
                         error)
            return body

    def _payload(self, item: bytes, *, recorded: bool) -> dict[str, Any] | None:
        """The message, or None for an item no kombu client wrote (logged and dropped, as
        kombu's own fetch drops it, but without stopping the worker)."""
        try:
            payload = loads(bytes_to_str(item))
            tag = payload["properties"]["delivery_tag"]
        except (ValueError, KeyError, TypeError):
            logger.error("dropped a queue item that is not a kombu message: %r", item[:1000])
            return None
        if recorded:
            self.connection.recorded_tags.add(tag)
        return payload

    def _prefixed(self, key: str) -> str:
        return f"{self.global_keyprefix}{key}" if self.global_keyprefix else key


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the atomic fetch; `driver_type` stays "redis", so
    Celery still applies `worker_disable_prefetch`."""

    Channel = Channel

    #: Seconds between sends of the acks that no fetch took.
    ack_flush_interval = 0.5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Delivery tags whose unacked records the fetch already wrote.
        self.recorded_tags: set[str] = set()
        #: Whether acks wait for the next fetch: only in an event loop, whose timer sends
        #: what no fetch took.
        self.acks_ride_on_fetch = False
        self._ack_flush_timer: Any = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        if self._ack_flush_timer is not None:  # a reconnect registers again
            self._ack_flush_timer.cancel()
        self._ack_flush_timer = loop.call_repeatedly(self.ack_flush_interval, self._flush_acks)
        self.acks_ride_on_fetch = True

    def _flush_acks(self) -> None:
        for channel in list(self.channels or ()):
            channel.flush_acks()

    def close_connection(self, connection: Any) -> None:
        """Close the channels (each sends its pending acks), then stop the timer: a
        reconnect's transport is a new one with a timer of its own."""
        super().close_connection(connection)
        if self._ack_flush_timer is not None:
            self._ack_flush_timer.cancel()
            self._ack_flush_timer = None


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The atomic fetch on the primary that the Sentinels name (kombu's Sentinel channel
    finds it for every new connection, so a reconnect after a failover reaches the
    promoted replica)."""

    from_transport_options = (*Channel.from_transport_options,
                              *(option for option in kombu_redis.SentinelChannel
                                .from_transport_options
                                if option not in Channel.from_transport_options))


class SentinelTransport(Transport):
    """`sentinel://` broker URLs, with the atomic fetch."""

    default_port = kombu_redis.SentinelTransport.default_port
    Channel = SentinelChannel


#: The URL schemes each of this module's transports serves.
SCHEMES = {f"{__name__}:Transport": ("redis", "rediss"),
           f"{__name__}:SentinelTransport": ("sentinel",)}


def claim_failover_schemes(transport: str | None) -> None:
    """If `transport` (the `broker_transport` setting) is one of this module's, make the
    other URLs of the broker's list resolve to it too.

    The setting names the transport of the list's first URL only. When a connection
    fails, Celery moves to the next URL and kombu takes its transport from the scheme
    (`Connection.switch`): after a Sentinel failover workers ran on kombu's stock
    transport, whose fetch loses a message when the worker dies between BRPOP and the
    unacknowledged record (jobs lost in the Sentinel soak), and whose channel close,
    when the reconnect failed too, stopped the worker ("Unrecoverable error").
    """
    if transport not in SCHEMES:
        return
    for scheme in SCHEMES[transport]:
        kombu.transport.TRANSPORT_ALIASES[scheme] = transport
        kombu.transport._transport_cache.pop(scheme, None)
