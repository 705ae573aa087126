"""Rows published after their commit are marked in batches by a thread of the process,
and by the process itself as it exits."""

import pytest
from django.db import connection, transaction

from tests.fixtures import wait_for
from tests.production import manage_py
from workers.core.models import OutboxMessage
from workers.core.outbox import outbox_enqueue
from workers.core.outbox_marks import mark_published
from workers.ops.tasks import probe

ENQUEUE_AND_EXIT = """
from django.db import transaction
from workers.core.outbox import outbox_enqueue
with transaction.atomic():
    outbox_enqueue(task_name="{task}", task_id="{task_id}")
"""


def other_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_marker_thread_marks_published_rows_then_lets_its_connection_go(settings,
                                                                            test_redis):
    settings.OUTBOX_MARK_INTERVAL = 0.05
    sessions = other_sessions()  # other tests' workers may hold some
    with transaction.atomic():
        rows = [outbox_enqueue(task_name=probe.name) for _ in range(3)]

    ids = [row.pk for row in rows]
    wait_for(lambda: OutboxMessage.objects.filter(pk__in=ids, published_at=None).count() == 0,
             what="the three rows marked by the marker thread")
    assert set(OutboxMessage.objects.filter(pk__in=ids).values_list(  # published once
        "publish_attempts", flat=True)) == {1}
    wait_for(lambda: other_sessions() <= sessions, what="the marker thread's connection closed")


@pytest.mark.django_db(transaction=True)
def test_a_late_mark_leaves_a_row_the_sweeper_marked_first_as_it_is(test_redis):
    with transaction.atomic():
        row = outbox_enqueue(task_name=probe.name)
    OutboxMessage.objects.filter(pk=row.pk).update(published_at="2026-01-01T00:00:00Z",
                                                   publish_attempts=7)

    mark_published(ids=[row.pk])
    stored = OutboxMessage.objects.get(pk=row.pk)
    assert (stored.published_at.year, stored.publish_attempts) == (2026, 7)


@pytest.mark.django_db(transaction=True)
def test_a_process_marks_what_it_published_before_it_exits(process_env, test_redis):
    # An hour between marks: only the flush at exit can have marked the row.
    script = ENQUEUE_AND_EXIT.format(task=probe.name, task_id="exits-marked")
    result = manage_py("shell", "-c", script, env=process_env | {"OUTBOX_MARK_INTERVAL": "3600"})

    assert result.returncode == 0, result.stderr
    stored = OutboxMessage.objects.get(task_id="exits-marked")
    assert (stored.published_at is not None, stored.publish_attempts) == (True, 1)
