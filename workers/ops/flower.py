"""Flower with every path behind the dashboard's login, and a Broker tab that works.

Flower 2 asks for credentials on its pages and API but serves `/metrics` and
`/healthcheck` to anyone: task names, counts and worker names leak to whoever can reach
the port. `require_login_everywhere()` gives those two handlers the same check as the
rest (basic auth from FLOWER_BASIC_AUTH, or Flower's OAuth login) before Flower starts,
and turns credentials Flower cannot compare (non-ASCII) into a 401 instead of a 500.
`show_broker_as()` lets the Broker tab and `/api/queues/length` read the queues of the
platform's Redis transport, from the first broker of a failover list that answers.
`leave_without_pending_broadcasts()` ends the process once Flower has stopped, even while
a broadcast to the workers is still retrying a broker that went away.
The private names they rely on are checked by workers/runtime/tests/test_celery_internals.py.
"""

import atexit
import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

import tornado.web
from flower.api.tasks import GetQueueLengths
from flower.app import Flower
from flower.views import BaseHandler, monitor
from redis.exceptions import RedisError

from workers.core.broker_urls import masked_url

logger = logging.getLogger(__name__)

OPEN_HANDLERS = (monitor.Metrics, monitor.Healthcheck)
#: Flower's own `/api/queues/length` (what `show_broker_as` wraps).
FLOWER_QUEUE_LENGTHS = GetQueueLengths.get


def require_login_everywhere() -> None:
    for handler in OPEN_HANDLERS:
        handler.prepare = _require_login
    if not hasattr(BaseHandler.get_current_user, "__wrapped__"):
        BaseHandler.get_current_user = _refusing_uncomparable(BaseHandler.get_current_user)


def _refusing_uncomparable(get_current_user: Callable[[BaseHandler], object]
                           ) -> Callable[[BaseHandler], object]:
    """Flower compares basic-auth credentials with hmac.compare_digest, which raises
    TypeError on non-ASCII text: any client sending such a header got a 500."""
    @functools.wraps(get_current_user)
    def checked(self: BaseHandler) -> object:
        try:
            return get_current_user(self)
        except TypeError as exc:
            raise tornado.web.HTTPError(401) from exc
    return checked


def _require_login(self: BaseHandler) -> None:
    """Flower's own check: a wrong or missing basic-auth header raises 401 inside it."""
    if not self.get_current_user():
        raise tornado.web.HTTPError(401)


def show_broker_as(*, urls: list[str]) -> None:
    """Give Flower's Broker tab and `/api/queues/length` the broker's own URL, the first
    of the failover list `urls` that answers.

    Both build their broker client from the URL of Flower's connection, and with the
    platform's transport (`broker_transport`, workers/runtime/redis_transport.py) that URL
    starts with the transport's class path, a scheme Flower does not know: they answered
    404 "'redis' broker is not supported". The transport changes only how a worker fetches;
    the keys Flower counts (a list per queue and priority step) are kombu's, so the plain
    redis:// URL reads them. Flower's own connection (events, inspect) keeps the transport.

    Flower asks that one URL only: while its broker was down (a failover, when an operator
    looks) `/api/queues/length` answered a 500 with Flower's error page. It now asks the
    next URL of the list, keeps the one that answered, and answers 503 if none does.
    """
    _use_broker(urls[0])
    GetQueueLengths.get = _from_a_broker_that_answers(FLOWER_QUEUE_LENGTHS, urls=urls)


def _use_broker(url: str) -> None:
    Flower.broker_uri_with_password = url  # in place of Flower's cached properties
    Flower.broker_uri = masked_url(url)  # shown on the Broker tab, passwords masked


def _from_a_broker_that_answers(
        get: Callable[[GetQueueLengths], Awaitable[None]], *,
        urls: list[str]) -> Callable[[GetQueueLengths], Awaitable[None]]:
    @functools.wraps(get)
    async def answered(self: GetQueueLengths) -> None:
        first = urls.index(Flower.broker_uri_with_password)
        for url in urls[first:] + urls[:first]:
            _use_broker(url)
            try:
                return await get(self)
            except (RedisError, OSError) as error:
                logger.warning("Flower: the broker at %s did not answer: %r",
                               masked_url(url), error)
        raise tornado.web.HTTPError(503, reason="No broker answered")
    return answered


def leave_without_pending_broadcasts() -> NoReturn:
    """End the process now that Flower's loop has stopped (SIGTERM, Ctrl-C), without
    waiting for the pool threads that broadcast to the workers.

    Flower enables the workers' events every 5 s and inspects them when a page asks, each
    a broadcast from a pool thread, and kombu retries a broadcast's publish for as long as
    the broker is down. The interpreter joins pool threads before it exits: stopped while
    its broker was down, `manage.py flower` outlived its SIGTERM until it was killed
    (Kubernetes waits 30 s, CI waited longer). Nobody will read those answers. The exit
    handlers still run first: Flower's own stop (which saves its state when persistent),
    Sentry's flush, logging's.
    """
    atexit._run_exitfuncs()  # what the interpreter runs after joining the threads
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # Flower's own exit status after SIGTERM
