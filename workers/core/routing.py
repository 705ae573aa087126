"""Queue names and the router: each task declares its queue where it is defined.

    @shared_task(route=CRITICAL, max_retries=8)
    def send_notification(notification_id: int) -> None: ...

`route` is the platform's task option (Celery's own `queue` task attribute is deprecated
for removal in Celery 6). The router reads it for every call that names no queue itself,
including tasks sent by name (beat, the outbox, a dead-letter replay); a task that declares
none fails at enqueue (and in the test suite) instead of landing on a queue nobody reads.
A `queue=` passed at call time wins.
"""

from typing import Any

from kombu import Exchange, Queue

from workers.core.exceptions import UnroutedTaskError
from workers.core.task_registry import project_task

CRITICAL = "critical"
BULK = "bulk"
QUEUES = (CRITICAL, BULK)
#: RabbitMQ only: where a queue's delivery limit sends a message
#: (workers.runtime.broker_dead_letters turns each into a row).
DEAD_LETTER = "dead-letters"


def declared_queues(*, rabbitmq: bool, delivery_limit: int) -> tuple[Queue, ...]:
    """The `task_queues` setting: one queue per pool, each on an exchange of its name.

    On RabbitMQ each is a quorum queue (replicated, acknowledged per message) on a topic
    exchange, which Celery's native delayed delivery needs to carry countdowns and retry
    backoff through the broker instead of holding them in a worker. A message returned
    more than `delivery_limit` times (each return is a lost worker, channel or broker) is
    dead-lettered, at least once, to DEAD_LETTER instead of being dropped or looping.
    """
    if not rabbitmq:
        return tuple(Queue(name, Exchange(name), routing_key=name) for name in QUEUES)
    arguments = {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER,
        "x-dead-letter-routing-key": DEAD_LETTER,
        "x-dead-letter-strategy": "at-least-once",  # needs reject-publish overflow
        "x-overflow": "reject-publish",
    }
    return tuple(Queue(name, Exchange(name, type="topic"), routing_key=name,
                       queue_arguments=arguments) for name in QUEUES)


def dead_letter_queue() -> Queue:
    """The quorum queue RabbitMQ dead-letters to; workers turn each message into a row."""
    return Queue(DEAD_LETTER, Exchange(DEAD_LETTER), routing_key=DEAD_LETTER,
                 queue_arguments={"x-queue-type": "quorum"})


def queue_for(name: str, task: Any = None) -> str:
    """The queue the task named `name` declares (Celery's own tasks: bulk)."""
    if name.startswith("celery."):  # housekeeping, such as beat's backend_cleanup
        return BULK
    if task is None:  # sent by name (the outbox, a replay, beat)
        task = project_task(name)
    queue = getattr(task, "route", None)
    if not isinstance(queue, str) or queue not in QUEUES:
        raise UnroutedTaskError(
            f"task {name!r} declares no queue: give its decorator route=CRITICAL or "
            "route=BULK (workers.core.routing)")
    return queue


def route_task(name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None,
               **kw: Any) -> dict[str, str] | None:
    """Celery router (`task_routes`): a call's own `queue=` wins, then the queue a retry
    was delivered from, else the task's route.

    A retry carries its delivery's exchange and routing key instead of a queue. Through
    RabbitMQ's native delayed delivery that key is the delay's bits before the queue's
    key ("0.1.….critical"), hence its last word.
    """
    if "queue" in options:
        return None
    delivered_from = queue_of_routing_key(options.get("routing_key"))
    if delivered_from in QUEUES:
        return {"queue": delivered_from}
    return {"queue": queue_for(name, task)}


def queue_of_routing_key(routing_key: str | None) -> str:
    """The queue a message was delivered from, by its routing key ("" if it has none).

    A message RabbitMQ delayed (a countdown, a retry's backoff) keeps the delay's bits in
    front of the queue's key: "0.0.….1.0.bulk" was delivered from "bulk".
    """
    return str(routing_key or "").rsplit(".", 1)[-1]
