"""Read-only queries over dead letters (the text they return for display comes redacted)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Min, Q, QuerySet
from django.utils import timezone

from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.rules import OPEN, replay_blocker
from workers.dead_letters.shown import shown_text

GROUPS_SHOWN = 200


def dead_letters_matching(
    *,
    ids: list[int] | None = None,
    task: str | None = None,
    queue: str | None = None,
    statuses: list[str] | None = None,
    older_than: timedelta | None = None,
    fingerprint: str | None = None,
) -> QuerySet[DeadLetter]:
    """Dead letters filtered the same way by the admin, the CLI and the services."""
    rows = DeadLetter.objects.all()
    if fingerprint:
        rows = rows.filter(fingerprint=fingerprint)
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


#: How the causes can be sorted: the newest failure, the most rows, the oldest failure.
GROUP_ORDERS = {"last_seen": "-last", "count": "-count", "first_seen": "first"}


@dataclass(frozen=True)
class Group:
    fingerprint: str
    task_name: str
    exception_type: str
    example: str  # the latest message, redacted (every viewer of the causes reads it)
    count: int
    new: int
    acknowledged: int
    snoozed: int
    first_seen: datetime
    last_seen: datetime
    last_day: int
    day_before: int  # the trend: the last 24 hours against the 24 before
    queues: list[str]
    note: str  # the latest note on the whole cause
    replay_blocker: str  # why replaying its latest open row as it stands cannot succeed
    latest_id: int

    @property
    def open(self) -> int:
        return self.new + self.acknowledged + self.snoozed


def dead_letter_groups(*, open_only: bool = True, search: str = "", order: str = "last_seen",
                       search_messages: bool = False) -> list[Group]:
    """Dead letters grouped by failure fingerprint, sorted by GROUP_ORDERS[order].

    `search` matches task and exception names, and messages only with `search_messages`
    (for those who may see payloads): a message can hold a secret that is shown redacted,
    and a search on it would tell the secret prefix by prefix."""
    now = timezone.now()
    rows = DeadLetter.objects.all()
    if "\x00" in search:  # no stored text holds a NUL (PostgreSQL refuses it): no match
        rows = rows.none()
    elif search:
        matches = Q(task_name__icontains=search) | Q(exception_type__icontains=search)
        if search_messages:
            matches |= Q(message__icontains=search)
        rows = rows.filter(matches)
    summary = (rows.order_by().values("fingerprint")
               .annotate(count=Count("id"), first=Min("failed_at"), last=Max("failed_at"),
                         latest=Max("id"), latest_open=Max("id", filter=Q(status__in=OPEN)),
                         new=Count("id", filter=Q(status=DeadLetter.Status.NEW)),
                         acknowledged=Count("id",
                                            filter=Q(status=DeadLetter.Status.ACKNOWLEDGED)),
                         snoozed=Count("id", filter=Q(status=DeadLetter.Status.SNOOZED)),
                         open=Count("id", filter=Q(status__in=OPEN)),
                         last_day=Count("id", filter=Q(failed_at__gte=now - timedelta(days=1))),
                         day_before=Count("id", filter=Q(
                             failed_at__gte=now - timedelta(days=2),
                             failed_at__lt=now - timedelta(days=1))))
               .order_by(GROUP_ORDERS[order], "fingerprint"))
    if open_only:
        summary = summary.filter(open__gt=0)
    shown = list(summary[:GROUPS_SHOWN])
    examples = DeadLetter.objects.in_bulk([pk for row in shown
                                           for pk in (row["latest"], row["latest_open"]) if pk])
    queues: dict[str, set[str]] = {}
    for fingerprint, queue in (DeadLetter.objects.order_by()
                               .filter(fingerprint__in=[row["fingerprint"] for row in shown])
                               .values_list("fingerprint", "queue").distinct()):
        queues.setdefault(fingerprint, set()).add(queue)
    notes: dict[str, str] = {}
    for fingerprint, text in (DeadLetterEvent.objects.filter(
            action=DeadLetterEvent.Action.NOTE, dead_letter=None,
            fingerprint__in=[row["fingerprint"] for row in shown])
            .order_by("at").values_list("fingerprint", "text")):
        notes[fingerprint] = text  # the latest wins
    return [Group(fingerprint=row["fingerprint"], task_name=examples[row["latest"]].task_name,
                  exception_type=examples[row["latest"]].exception_type,
                  example=shown_text(row=examples[row["latest"]],
                                     text=examples[row["latest"]].message)[:300],
                  count=row["count"],
                  new=row["new"], acknowledged=row["acknowledged"], snoozed=row["snoozed"],
                  first_seen=row["first"], last_seen=row["last"],
                  last_day=row["last_day"], day_before=row["day_before"],
                  queues=sorted(queues.get(row["fingerprint"], ())),
                  note=notes.get(row["fingerprint"], ""),
                  replay_blocker=(replay_blocker(examples[row["latest_open"]])
                                  if row["latest_open"] else ""),
                  latest_id=row["latest"])
            for row in shown]
