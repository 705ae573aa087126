"""Every private Celery, kombu and django-celery-beat name `workers.runtime` relies on,
with the shape it expects, so an upgrade that renames one fails here and not, silently,
in production (event batching, timer compaction, the atomic fetch or the beat fixes
turned off). The pins in pyproject.toml stay; this is what tells a bump is safe."""

import inspect
import weakref

from celery import Celery
from celery.app.amqp import AMQP
from celery.fixups import django as celery_django_fixup
from celery.worker import request as celery_request
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from celery.worker.consumer import connection as celery_connection
from celery.worker.consumer import consumer as celery_consumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from celery.worker.consumer.events import Events
from celery.worker.consumer.tasks import Tasks
from django_celery_beat import schedulers as beat_schedulers
from kombu import Connection, Producer
from kombu import common as kombu_common
from kombu.asynchronous.timer import Timer
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.transport.pyamqp import Channel as AmqpChannel

from config.celery import app
from workers.ops.tasks import probe
from workers.runtime.batch_publish import _PUBLISH_REST


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_consumer_hooks_the_dead_lettering_consumer_overrides():
    """workers/runtime/consumer.py: poison messages and event batching."""
    for hook, params in (("on_decode_error", ["self", "message", "exc"]),
                         ("on_unknown_message", ["self", "body", "message"]),
                         ("on_unknown_task", ["self", "body", "message", "exc"]),
                         ("on_invalid_task", ["self", "body", "message", "exc"]),
                         ("on_send_event_buffered", ["self"]),
                         ("connect", ["self"]),
                         ("_flush_events", ["self"])):
        assert parameters(getattr(Consumer, hook)) == params, hook
    # Celery calls the buffered-event hook from its dispatcher, and flushes on the loop.
    assert "on_send_event_buffered" in inspect.getsource(celery_consumer)
    # The Connection step opens the consumer's connection through connect(), where the
    # RabbitMQ queues are declared before native delayed delivery binds them.
    assert "c.connect()" in inspect.getsource(celery_connection.Connection.start)
    assert DelayedDelivery.requires == (Tasks,)  # it runs once the consumed queues exist


def test_request_context_carries_the_message_headers_the_delivery_cap_reads():
    """workers/core/deliveries.py reads RabbitMQ's x-delivery-count from the task request:
    Celery builds the request from the message's headers."""
    assert "message.headers.copy()" in inspect.getsource(celery_request.Request.__init__)


def test_event_dispatcher_batch_limit_and_the_step_it_runs_after():
    """workers/runtime/event_batches.py sets EventDispatcher.buffer_limit."""
    with app.connection_for_write() as connection:
        dispatcher = app.events.Dispatcher(connection, enabled=False)
        assert isinstance(dispatcher.buffer_limit, int)
    assert f"{Events.__module__}:{Events.__name__}" == "celery.worker.consumer.events:Events"


def test_kombu_timer_heap_the_compaction_prunes():
    """workers/runtime/timers.py reads Timer._queue and each entry's `canceled`."""
    timer = Timer()
    entry = timer.call_after(60, lambda: None)
    assert timer._queue[0].entry is entry
    entry.cancel()
    assert timer._queue[0].entry.canceled is True


def test_request_internals_the_platform_request_uses():
    """workers/runtime/request.py: `_args`, `_kwargs`, `_context`, the request stack and the
    two failure hooks it wraps."""
    source = inspect.getsource(celery_request.Request.__init__)
    for name in ("self._args", "self._kwargs"):
        assert name in source, name
    assert hasattr(inspect.getattr_static(celery_request.Request, "_context"), "__get__")
    assert parameters(celery_request.Request.on_timeout) == ["self", "soft", "timeout"]
    assert parameters(celery_request.Request.on_failure) == [
        "self", "exc_info", "send_failed_event", "return_ok"]
    assert callable(probe.request_stack.push)
    assert callable(probe.request_stack.pop)


def test_database_scheduler_state_the_locked_scheduler_resets():
    """workers/runtime/beat.py: the schedule, the heap and its invalidation flag, the
    change timestamp, `reserve` and `apply_async`'s signature."""
    scheduler = beat_schedulers.DatabaseScheduler
    for name in ("_schedule", "_heap_invalidated", "_last_timestamp", "_initial_read"):
        assert hasattr(scheduler, name), name
    assert "self._heap_invalidated = True" in inspect.getsource(scheduler)
    assert callable(scheduler.Changes.last_change)
    assert parameters(scheduler.reserve) == ["self", "entry"]
    assert parameters(scheduler.apply_async)[:4] == ["self", "entry", "producer", "advance"]
    assert "last_run_at" in inspect.getsource(beat_schedulers.ModelEntry.__next__)


def test_the_django_fixup_reads_the_connection_reuse_setting():
    """config/settings/celery.py sets CELERY_DB_REUSE_MAX for Celery's Django fix-up."""
    assert "CELERY_DB_REUSE_MAX" in inspect.getsource(celery_django_fixup)


def test_redis_channel_internals_the_atomic_fetch_replaces_or_calls():
    """workers/runtime/redis_transport.py."""
    for name in ("_brpop_start", "_brpop_read", "_q_for_pri", "_flush_brpop_reauth",
                 "_maybe_update_queues_expire", "_in_poll", "_brpop_sent_at",
                 "from_transport_options", "priority_steps", "sep", "unacked_key",
                 "unacked_index_key", "global_keyprefix", "conn_or_acquire", "client",
                 "_create_client", "pool", "_pool", "decode_body", "codecs",
                 "_next_delivery_tag"):
        assert hasattr(kombu_redis.Channel, name), name
    # Every publish takes its delivery tag from _next_delivery_tag.
    assert "self._next_delivery_tag()" in inspect.getsource(
        virtual.Channel._inplace_augment_message)
    assert "global_keyprefix" in kombu_redis.Channel.from_transport_options
    # conn_or_acquire() without a client calls _create_client(), which the channel caches.
    assert "self._create_client()" in inspect.getsource(kombu_redis.Channel.conn_or_acquire)
    assert parameters(kombu_redis.Channel._create_client) == ["self", "asynchronous"]
    # QoS.append writes [payload, exchange, routing key] JSON under the delivery tag.
    assert "dumps([message._raw, EX, RK])" in inspect.getsource(kombu_redis.QoS.append)
    assert parameters(virtual.QoS.append) == ["self", "message", "delivery_tag"]
    assert parameters(virtual.QoS.ack) == ["self", "delivery_tag"]
    assert "self._remove_from_indices(delivery_tag).execute()" in inspect.getsource(
        kombu_redis.QoS.ack)
    assert parameters(kombu_redis.Channel._connparams) == ["self", "asynchronous"]
    assert "self.connection.client" in inspect.getsource(kombu_redis.Channel._connparams)
    assert hasattr(virtual.Transport, "_deliver")
    assert "'BRPOP': self._brpop_read" in inspect.getsource(kombu_redis.Channel.__init__)
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        assert callable(channel._queue_cycle.consume)
        assert callable(channel._queue_cycle.rotate)
        assert connection.transport.driver_type == "redis"  # keeps worker_disable_prefetch


def test_the_transport_internals_acks_riding_on_the_fetch_use():
    """workers/runtime/redis_transport.py: kombu's virtual QoS gives a delivery's credit
    back in `ack` (`_quick_ack`) and counts it in `can_consume`; the Redis transport
    registers with the worker's hub (`register_with_event_loop`, `call_repeatedly`) and
    closes its channels in `close_connection`, where each channel drops its transport
    (`connection = None`) and leaves `channels`."""
    source = inspect.getsource(virtual.QoS)
    assert "self._quick_ack(delivery_tag)" in inspect.getsource(virtual.QoS.ack)
    assert "len(self._dirty)" in inspect.getsource(virtual.QoS.can_consume)
    assert "self._quick_ack = self._dirty.add" in source
    assert parameters(kombu_redis.Transport.register_with_event_loop) == [
        "self", "connection", "loop"]
    assert "loop.call_repeatedly(" in inspect.getsource(
        kombu_redis.Transport.register_with_event_loop)
    assert parameters(virtual.Transport.close_connection) == ["self", "connection"]
    assert "channel.close()" in inspect.getsource(virtual.Transport.close_connection)
    closing = inspect.getsource(virtual.Transport.close_channel)
    assert "self.channels.remove(channel)" in closing
    assert "channel.connection = None" in closing
    assert "self._qos.restore_unacked_once()" in inspect.getsource(virtual.Channel.close)
    assert "_remove_from_indices" in inspect.getsource(kombu_redis.QoS.reject)


def test_the_request_internals_a_replay_noted_with_its_ack_reads():
    """workers/runtime/request.py: a request's ack after success comes once the worker's
    state holds its id as successful (`task_ready(successful=True)`, in the request class
    Celery builds for the pool), and the request's message headers are `_request_dict`."""
    from celery.worker.request import create_request_cls

    source = inspect.getsource(create_request_cls)
    assert source.index("task_ready(self, successful=True)") < source.index(
        "self.acknowledge()")
    assert "successful_requests.add(request.id)" in inspect.getsource(worker_state.task_ready)
    assert "message.headers.copy()" in inspect.getsource(celery_request.Request.__init__)
    assert "if not self.acknowledged:" in inspect.getsource(celery_request.Request.acknowledge)


def test_redis_sentinel_channel_the_atomic_fetch_mixes_into():
    """workers/runtime/redis_transport.py: kombu's Sentinel channel finds the primary in
    its pool (`_get_pool`) and reads its options from the transport options; the atomic
    fetch's channel goes first in the method order."""
    from workers.runtime.redis_transport import Channel, SentinelChannel, SentinelTransport

    assert "_get_pool" in vars(kombu_redis.SentinelChannel)
    assert "master_name" in kombu_redis.SentinelChannel.from_transport_options
    assert {"master_name", "sentinel_kwargs", "fetch_wait"} <= set(
        SentinelChannel.from_transport_options)
    assert SentinelChannel.__mro__[1:3] == (Channel, kombu_redis.SentinelChannel)
    assert SentinelTransport.default_port == kombu_redis.SentinelTransport.default_port


def test_the_transport_table_a_failover_url_is_resolved_from():
    """workers/runtime/redis_transport.py (`claim_failover_schemes`): kombu resolves the
    transport of the next URL from its scheme through this table and its cache."""
    import kombu.transport

    assert kombu.transport.TRANSPORT_ALIASES["sentinel"].endswith(":SentinelTransport")
    assert isinstance(kombu.transport._transport_cache, dict)
    assert "parse_url(conn_str)" in inspect.getsource(kombu.Connection.switch)


def test_the_consumer_blueprint_info_inspect_stats_reads():
    """workers/runtime/consumer.py censors what the consumer's blueprint reports."""
    from celery.worker.worker import WorkController

    assert parameters(Consumer.Blueprint.info) == ["self", "parent"]
    assert "self.consumer.blueprint.info(self.consumer)" in inspect.getsource(
        WorkController.stats)


def test_redis_list_layout_queue_stats_reads():
    """workers/core/queue_stats.py: a queue is a list per priority step, published with
    LPUSH (oldest last), named `<queue><sep><step>` above step 0."""
    assert "lpush" in inspect.getsource(kombu_redis.Channel._put)
    assert 'f"{queue}{self.sep}{pri}"' in inspect.getsource(kombu_redis.Channel._q_for_pri)


def test_flower_handlers_the_lockdown_guards():
    """workers/ops/flower.py adds a login check to Flower's open monitoring handlers."""
    from flower import urls
    from flower.views import BaseHandler, monitor

    routes = {spec[0]: spec[1] for spec in urls.handlers if isinstance(spec, tuple)}
    assert routes["/metrics"] is monitor.Metrics
    assert routes["/healthcheck"] is monitor.Healthcheck
    assert parameters(BaseHandler.get_current_user) == ["self"]


def test_worker_state_the_heartbeat_counts_running_tasks_from():
    """workers/runtime/heartbeat.py reports len(celery.worker.state.active_requests)."""
    assert isinstance(worker_state.active_requests, weakref.WeakSet)
    assert isinstance(app.amqp.queues.consume_from, dict)


def test_the_fetch_state_kombus_poller_reads():
    """workers/runtime/redis_transport.py sets and checks `_in_poll` and `_brpop_sent_at`,
    the names kombu's poller and its own health check read."""
    source = inspect.getsource(kombu_redis)
    assert "channel._in_poll" in source
    assert "channel._brpop_sent_at" in source


def test_flower_broker_urls_the_broker_tab_builds_its_client_from():
    """workers/ops/flower.py sets Flower.broker_uri_with_password (the Broker tab's and
    /api/queues/length's client) and Flower.broker_uri (shown on the Broker tab)."""
    from flower.app import Flower
    from flower.views import BaseHandler
    from flower.views.broker import BrokerView

    for name in ("broker_uri", "broker_uri_with_password"):
        assert name in vars(Flower), name
    assert "Broker(app.broker_uri_with_password" in inspect.getsource(BaseHandler.get_broker)
    assert "broker_url=self.application.broker_uri" in inspect.getsource(BrokerView.get)
    # What the failover wrapper around /api/queues/length retries on another URL.
    from workers.ops.flower import FLOWER_QUEUE_LENGTHS

    answer = inspect.getsource(FLOWER_QUEUE_LENGTHS)
    assert FLOWER_QUEUE_LENGTHS.__qualname__ == "GetQueueLengths.get"
    assert "self.get_broker()" in answer
    assert "await broker.queues(" in answer



def test_how_flower_stops_which_the_flower_command_finishes():
    """workers/ops/flower.py runs the exit handlers itself (`atexit._run_exitfuncs`) once
    Flower's command returns, which it does after SIGTERM or Ctrl-C stopped its loop, and
    they include Flower's own stop."""
    import atexit

    from flower import command as flower_command

    assert callable(atexit._run_exitfuncs)
    source = inspect.getsource(flower_command.flower.callback)
    assert "atexit.register(flower_app.stop)" in source
    assert "except (KeyboardInterrupt, SystemExit):" in source
    assert "sys.exit(0)" in inspect.getsource(flower_command.sigterm_handler)

def test_the_settings_filter_the_censor_replaces():
    """workers/runtime/config_censor.py replaces celery.app.utils.filter_hidden_settings,
    which Settings.table() looks up when it runs; `celery inspect conf` and `report` (and
    so Flower's Config tab) report that table."""
    from celery.app import utils as celery_app_utils
    from celery.worker import control as worker_control

    from workers.runtime.config_censor import CELERY_FILTER, censor_settings

    assert celery_app_utils.filter_hidden_settings is censor_settings  # installed
    assert CELERY_FILTER.__module__ == "celery.app.utils"
    assert parameters(CELERY_FILTER) == ["conf"]
    assert "filter_hidden_settings if censored" in inspect.getsource(
        celery_app_utils.Settings.table)
    assert "state.app.conf.table(" in inspect.getsource(worker_control.conf)
    assert "app.conf.humanize()" in inspect.getsource(celery_app_utils.bugreport)
    assert "self.table(" in inspect.getsource(celery_app_utils.Settings.humanize)


def test_the_deprecation_warning_the_namespaced_names_are_kept_out_of():
    """workers/runtime/deprecated_settings.py trims Settings.deprecated_settings, which
    the worker's start reads through maybe_warn_deprecated_settings, exempting only the
    'django.conf:settings' source; SETTING_KEYS holds the current names."""
    from celery.app import defaults as celery_defaults
    from celery.app import utils as celery_app_utils
    from celery.apps import worker as celery_worker

    assert "task_serializer" in celery_defaults.SETTING_KEYS
    assert "deprecated_settings" in parameters(celery_app_utils.Settings.__init__)
    assert "self.deprecated_settings" in inspect.getsource(
        celery_app_utils.Settings.maybe_warn_deprecated_settings)
    starting = inspect.getsource(celery_worker.Worker.on_start)
    assert "'django.conf:settings'" in starting
    assert "app.conf.maybe_warn_deprecated_settings()" in starting
    assert "on_after_configure.send(sender=self, source=self._conf)" in inspect.getsource(
        Celery._load_config)


def test_the_message_builder_and_request_methods_redaction_overrides():
    """workers/runtime/task_messages.py overrides AMQP.as_task_v2 (the app's `amqp`), which
    builds `argsrepr`/`kwargsrepr` (headers and task-sent event) unless given them, with
    Celery's size and depth limits; workers/runtime/request.py overrides Request.info, which
    `inspect active/reserved/scheduled` report, and Request.send_event, which sends the
    task-failed and task-retried events with the exception and traceback."""
    from celery.app import amqp as celery_amqp
    from celery.worker import control as worker_control

    from workers.runtime.task_messages import RedactingAMQP

    assert isinstance(app.amqp, RedactingAMQP)
    assert parameters(celery_amqp.AMQP.as_task_v2)[:5] == [
        "self", "task_id", "name", "args", "kwargs"]
    assert {"argsrepr", "kwargsrepr"} <= set(parameters(celery_amqp.AMQP.as_task_v2))
    source = inspect.getsource(celery_amqp.AMQP.as_task_v2)
    for name in ("'argsrepr': argsrepr", "'kwargsrepr': kwargsrepr", "'args': argsrepr"):
        assert name in source, name
    assert {2: "as_task_v2"}.items() <= {
        version: method.__name__ for version, method in app.amqp.task_protocols.items()}.items()
    assert app.conf.task_protocol == 2
    assert isinstance(app.amqp.argsrepr_maxsize, int)
    assert isinstance(app.amqp.kwargsrepr_maxsize, int)
    assert isinstance(app.conf.task_repr_maxlevels, int)
    assert "amqp.create_task_message(" in inspect.getsource(type(app).send_task)
    assert parameters(celery_request.Request.info) == ["self", "safe"]
    assert "request.info(" in inspect.getsource(worker_control.reserved)
    assert "arg0.info()" in inspect.getsource(worker_control._iter_schedule_requests)
    assert parameters(celery_request.Request.send_event) == ["self", "type", "fields"]
    assert "self.send_event(\n                        'task-failed'" in inspect.getsource(
        celery_request.Request.on_failure)


def test_consumer_knows_its_worker_and_pool_as_the_heartbeat_reads_them():
    """workers/runtime/heartbeat.py reports the worker's concurrency and pool type."""
    from celery.worker import WorkController

    source = inspect.getsource(celery_consumer.Consumer.__init__)
    assert "self.controller = controller" in source
    assert "self.pool = pool" in source
    assert "self.concurrency = " in inspect.getsource(WorkController.setup_defaults)


def test_the_publish_batches_and_confirms_the_batch_publisher_relies_on():
    """workers/runtime/batch_publish.py: kombu's Redis publish batch (which the transport
    turns on) and py-amqp's publish that does not wait, with the confirm events (kombu's
    RabbitMQ channel is py-amqp's, whose names it inherits)."""
    assert Connection("amqp://").transport.driver_type == "amqp"
    assert parameters(Producer.batch) == ["self", "max_size"]
    assert "supports_batch_publish" in inspect.getsource(Producer)
    assert parameters(kombu_redis.Channel.create_publish_batch) == ["self", "max_size"]
    assert "_publish_batch" in inspect.getsource(kombu_redis.Channel._put)
    assert parameters(AmqpChannel._basic_publish)[:4] == ["self", "msg", "exchange",
                                                          "routing_key"]
    assert "self.basic_publish = self.basic_publish_confirm" in inspect.getsource(
        AmqpChannel.__init__)  # the per-message wait the batch's channel sets aside
    for handler, event in (("_on_basic_ack", "basic_ack"), ("_on_basic_nack", "basic_nack")):
        assert f"self.events['{event}']" in inspect.getsource(getattr(AmqpChannel, handler))


def test_the_publish_steps_a_batch_reuses_for_calls_like_the_first():
    """workers/runtime/batch_publish.py hands kombu each message where `Producer.publish`
    does, with the arguments `Producer.publish` passes on (in this order)."""
    assert parameters(Producer._publish) == [
        "self", "body", "priority", "content_type", "content_encoding", "headers",
        "properties", *_PUBLISH_REST[1:]]
    assert "return _publish(\n            body, priority, content_type, content_encoding," \
        in inspect.getsource(Producer.publish)
    assert "send_before_publish(" in inspect.getsource(AMQP._create_task_sender)
    assert "producer.publish(body, **publish_kwargs)" in inspect.getsource(
        AMQP._create_task_sender)


def test_the_declaration_cache_a_batch_looks_in_before_kombu_would():
    """workers/runtime/batch_publish.py skips the entities `maybe_declare` would find in
    its cache: the connection's `declared_entities`, keyed by `hash(entity)`, for entities
    that `can_cache_declaration`."""
    source = inspect.getsource(kombu_common._maybe_declare)
    assert "declared = channel.connection.client.declared_entities" in source
    assert "ident = hash(entity)" in source
    assert "entity.can_cache_declaration" in source
    assert isinstance(Connection("redis://").declared_entities, set)
    assert "maybe_declare(entity, retry=retry" in inspect.getsource(Producer._publish)


def test_what_send_task_takes_from_where_it_is_called():
    """workers/runtime/batch_publish.py keeps a thread's decisions while these stay the
    same: the registry `send_task` reads a task's options from (`app._tasks`, not
    `app.tasks`, which would finalize the app), and the running task it names as parent."""
    source = inspect.getsource(Celery.send_task)
    assert "registry = self._tasks" in source
    assert "parent = self.current_worker_task" in source
    assert "reply_to or self.thread_oid" in source
    assert isinstance(app._tasks, dict)
