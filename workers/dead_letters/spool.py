"""Dead letters written while PostgreSQL is unreachable wait in a Redis list until it is back.

A failed task's message is acknowledged once its failure is recorded; with the database
down, the record would be lost with it (ten failures during an outage once left no row).
The spool sits in the broker's Redis, which the acknowledgement needs anyway. Beat drains
it every DEAD_LETTER_SPOOL_DRAIN_INTERVAL seconds; storing is idempotent by task id, so a
drain interrupted between the insert and the removal only finds its row already there.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, InterfaceError

from workers.api.broker import redis_client

logger = logging.getLogger(__name__)

SPOOL_KEY = "workers:dead-letter-spool"


def dead_letter_spool_push(*, fields: dict[str, Any]) -> None:
    """Append one dead letter's fields (JSON-safe already) to the spool."""
    redis_client().rpush(SPOOL_KEY, json.dumps(fields))


def dead_letter_spool_size() -> int:
    return int(redis_client().llen(SPOOL_KEY))


def dead_letter_spool_drain(*, store: Callable[..., Any], limit: int = 1000) -> int:
    """Store spooled dead letters oldest first with `store(fields=...)`; return how many.

    Stops at the first database error and leaves that entry and the rest for the next
    drain. An entry that is not JSON (nothing here writes one) is logged and dropped
    rather than blocking the spool for ever.
    """
    client = redis_client()
    stored = 0
    while stored < limit:
        entry = client.lindex(SPOOL_KEY, 0)
        if entry is None:
            break
        assert isinstance(entry, bytes)  # the client does not decode responses
        try:
            fields = json.loads(entry)
        except ValueError:
            logger.error("dead-letter spool: dropping an entry that is not JSON: %r", entry)
            client.lrem(SPOOL_KEY, 1, entry)  # type: ignore[arg-type]  # bytes, as stored
            continue
        try:
            store(fields=fields)
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("dead-letter spool: database still unavailable (%s); %d left",
                           exc, client.llen(SPOOL_KEY))
            break
        client.lrem(SPOOL_KEY, 1, entry)  # type: ignore[arg-type]  # bytes, as stored
        stored += 1
    return stored
