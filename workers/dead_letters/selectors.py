"""Read-only queries over dead letters."""

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from workers.dead_letters.models import DeadLetter


def dead_letters_matching(
    *,
    ids: list[int] | None = None,
    task: str | None = None,
    queue: str | None = None,
    statuses: list[str] | None = None,
    older_than: timedelta | None = None,
) -> QuerySet[DeadLetter]:
    """Dead letters filtered the same way by the admin, the CLI and the services."""
    rows = DeadLetter.objects.all()
    if ids:
        rows = rows.filter(pk__in=ids)
    if task:
        rows = rows.filter(task_name=task)
    if queue:
        rows = rows.filter(queue=queue)
    if statuses:
        rows = rows.filter(status__in=statuses)
    if older_than is not None:
        rows = rows.filter(failed_at__lt=timezone.now() - older_than)
    return rows
