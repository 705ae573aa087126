"""A statement sent straight through libpq as one simple query, its values quoted by libpq.

For the per-job statements on the hot paths (the effect-once claim, a one-job outbox
row): psycopg's cursor sends a transaction's `BEGIN` as a round trip of its own before
the first statement, and Django's cursor adapts every parameter; here the `BEGIN` goes
in front of the statement when psycopg would have sent it, and the values are literals
(docs/performance.md). psycopg then sees the transaction open and sends no `BEGIN` of
its own; the commit stays Django's. Such a statement is not in `connection.queries` nor in
an error tracker's query spans. PostgreSQL only: callers keep Django's cursor elsewhere.
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache

import psycopg
from django.db import DataError, connection, models
from psycopg import pq

#: A value as the statement may hold it (None is NULL).
Value = str | int | datetime | None


def execute_in_one_round_trip(statement: str, values: Sequence[Value]) -> pq.abc.PGresult:
    """Run `statement`, whose `{}` are filled with `values` as literals, and return its
    result; raise psycopg's own exception for a failure, as its cursor would (within
    Django's wrapper, which turns it into Django's DatabaseError subclasses)."""
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        connection.close_if_health_check_failed()  # as Django's cursor would, unless skipped
        connection.ensure_connection()
        pgconn: pq.abc.PGconn = connection.connection.pgconn
        escape = pq.Escaping(pgconn).escape_literal
        parts = statement.encode().split(b"{}")
        if len(parts) != len(values) + 1:
            raise ValueError(f"{len(parts) - 1} places for {len(values)} values")
        query = bytearray(parts[0])
        for value, part in zip(values, parts[1:], strict=True):
            query += _literal(escape, value) + part
        if (not connection.connection.autocommit
                and pgconn.transaction_status == pq.TransactionStatus.IDLE):
            query[:0] = b"BEGIN; "  # what psycopg would have sent first, on its own
        result = pgconn.exec_(bytes(query))
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise _error(result)
        return result


def refuse_longer_than_columns(model: type[models.Model], texts: dict[str, str]) -> None:
    """Raise DataError for a text longer than its column holds. PostgreSQL stores one
    whose excess is spaces cut to the length instead of refusing it: "k" * 255 + " " would
    be stored as, and later taken for, "k" * 255 (raw statements skip the ORM's checks)."""
    for field, text in texts.items():
        limit = _column_length(model, field)
        if len(text) > limit:
            raise DataError(f"a {model._meta.model_name} {field} of {len(text)} characters "
                            f"is longer than the {limit} the table holds")


@cache
def _column_length(model: type[models.Model], field: str) -> int:
    return getattr(model._meta.get_field(field), "max_length", None) or 0


def _literal(escape: Callable[[bytes], bytes], value: Value) -> bytes:
    """`value` quoted for the statement; a NUL refused as psycopg's own binding refuses it
    (libpq's escaping would silently cut the text there: two keys would become one), and
    a lone surrogate, which UTF-8 cannot carry."""
    if value is None:
        return b"NULL"
    if isinstance(value, int):
        return str(int(value)).encode()  # int() drops a bool's or an IntEnum's own repr
    text = value.isoformat() if isinstance(value, datetime) else value
    if "\x00" in text:
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    try:
        return escape(text.encode())
    except UnicodeEncodeError as error:  # a lone surrogate: refused as clearly as a NUL
        raise psycopg.DataError(f"text UTF-8 cannot carry: {error}") from error


def _error(result: pq.abc.PGresult) -> psycopg.Error:
    """psycopg's own exception for the failed statement, as its cursor would have raised
    it (Django's wrapper then turns it into its OperationalError, IntegrityError...)."""
    message = (result.error_message or b"the statement failed").decode(errors="replace")
    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    if sqlstate is None:  # no answer from the server: the connection is gone
        return psycopg.OperationalError(message)
    try:
        return psycopg.errors.lookup(sqlstate.decode())(message)
    except KeyError:  # a code newer than this psycopg
        return psycopg.DatabaseError(message)
