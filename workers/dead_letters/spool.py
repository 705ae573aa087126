"""Dead letters written while PostgreSQL is unreachable wait in a Redis list until it is back.

A failed task's message is acknowledged once its failure is recorded; with the database
down, the record would be lost with it.
The spool sits in the broker's Redis, which the acknowledgement needs anyway. Beat drains
it every DEAD_LETTER_SPOOL_DRAIN_INTERVAL seconds; storing is idempotent by task id, so a
drain interrupted between the insert and the removal only finds its row already there.

Only an outage may hold the drain up. An entry the database refuses while it answers
(a constraint, a value it cannot take, something that is not a dead letter at all) would
stop every drain at the head of the spool, for good, with the failures of a real outage
queued behind it. Such an entry is set aside instead: moved, with its error, to
SET_ASIDE_KEY (which nothing drains), logged at ERROR and counted in `/metrics`
(`celery_dead_letter_spool_set_aside`); the drain goes on with the next one.
"""

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import Error, InterfaceError, OperationalError, connection

from workers.core.platform_redis import redis_client

logger = logging.getLogger(__name__)

SPOOL_KEY = "workers:dead-letter-spool"
#: Entries the database refused for a reason other than being unreachable, each as JSON:
#: {"entry": the spooled text, "error": why, "set_aside_at": Unix time}. An operator
#: reads them with `redis-cli LRANGE workers:dead-letter-spool:set-aside 0 -1`.
SET_ASIDE_KEY = "workers:dead-letter-spool:set-aside"


def dead_letter_spool_push(*, fields: dict[str, Any]) -> None:
    """Append one dead letter's fields (JSON-safe already) to the spool."""
    redis_client().rpush(SPOOL_KEY, json.dumps(fields))


def dead_letter_spool_size() -> int:
    return int(redis_client().llen(SPOOL_KEY))


def dead_letter_spool_set_aside_size() -> int:
    return int(redis_client().llen(SET_ASIDE_KEY))


def dead_letter_spool_set_aside(*, entry: str | bytes, error: BaseException | str,
                                remove_from_spool: bool = False) -> None:
    """Keep a dead letter that could not be stored, with why, where an operator finds it.

    With `remove_from_spool`, the spooled `entry` leaves the spool in the same
    transaction, so a crash in between neither loses it nor keeps it in both lists.
    """
    text = entry.decode("utf-8", errors="backslashreplace") if isinstance(entry, bytes) else entry
    why = error if isinstance(error, str) else f"{type(error).__qualname__}: {error}"
    client = redis_client()
    with client.pipeline() as pipe:  # MULTI/EXEC
        pipe.rpush(SET_ASIDE_KEY, json.dumps({"entry": text, "error": why,
                                              "set_aside_at": time.time()}))
        if remove_from_spool:
            pipe.lrem(SPOOL_KEY, 1, entry)  # type: ignore[arg-type]  # bytes, as stored
        pipe.llen(SET_ASIDE_KEY)
        set_aside = pipe.execute()[-1]
    # The first line only: PostgreSQL's detail lines quote the refused data.
    logger.error("dead-letter spool: set aside a dead letter that could not be stored (%s); "
                 "%d set aside in %s for an operator", why.splitlines()[0] if why else "",
                 set_aside, SET_ASIDE_KEY)


def database_answers() -> bool:
    """Whether a trivial query succeeds now: tells an outage from a refused entry."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Error:
        return False
    return True


def dead_letter_spool_drain(*, store: Callable[..., Any], limit: int = 1000,
                            database_up: Callable[[], bool] = database_answers) -> int:
    """Store spooled dead letters oldest first with `store(fields=...)`; return how many.

    A connection error stops the drain and leaves that entry and the rest for the next
    one, unless the database still answers (`database_up`, a `SELECT 1` by default):
    then the error was about the entry. That entry, like one `store` refuses for any
    other reason or one that is not JSON (nothing here writes one), is set aside and
    the drain goes on.
    """
    client = redis_client()
    stored = 0
    for _ in range(limit):
        entry = client.lindex(SPOOL_KEY, 0)
        if entry is None:
            break
        assert isinstance(entry, bytes)  # the client does not decode responses
        try:
            fields = json.loads(entry)
        except ValueError as exc:
            dead_letter_spool_set_aside(entry=entry, error=f"not JSON: {exc}",
                                        remove_from_spool=True)
            continue
        try:
            store(fields=fields)
        except Exception as exc:  # an outage, or this entry refused: which one decides
            if isinstance(exc, OperationalError | InterfaceError) and not database_up():
                logger.warning("dead-letter spool: database still unavailable (%s); %d left",
                               exc, client.llen(SPOOL_KEY))
                break
            dead_letter_spool_set_aside(entry=entry, error=exc, remove_from_spool=True)
            continue
        client.lrem(SPOOL_KEY, 1, entry)  # type: ignore[arg-type]  # bytes, as stored
        stored += 1
    return stored
