"""`manage.py dlq list|requeue|discard|purge|drill`: dead-letter triage for scripts."""

import getpass
import re
import time
from datetime import timedelta
from typing import Any

from celery.utils import uuid
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from workers.dead_letters.models import DeadLetter
from workers.dead_letters.redaction import redact
from workers.dead_letters.selectors import dead_letters_matching
from workers.dead_letters.services import (
    DISCARDABLE,
    REQUEUEABLE,
    dead_letters_discard,
    dead_letters_purge,
    dead_letters_requeue,
)
from workers.tasks import dead_letter_drill

DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    match = DURATION.match(text)
    if not match:
        raise CommandError(f"--older-than takes a number and a unit (30m, 12h, 7d), not {text!r}")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


class Command(BaseCommand):
    help = "List, requeue, discard or purge dead letters, or run a dead-letter fire drill."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        for name, text in (("list", "show matching dead letters"),
                           ("requeue", "send matching dead letters to their queue again"),
                           ("discard", "mark matching dead letters as not to be replayed"),
                           ("purge", "delete matching dead letters (discarded/resolved "
                                     "unless --status says otherwise)")):
            sub = actions.add_parser(name, help=text)
            sub.add_argument("ids", nargs="*", type=int, help="dead letter ids")
            sub.add_argument("--task", help="task name")
            sub.add_argument("--queue", help="queue name")
            sub.add_argument("--status", action="append", choices=DeadLetter.Status.values,
                             help="status (repeatable)")
            sub.add_argument("--older-than", type=parse_duration, help="e.g. 30m, 12h, 7d")
            sub.add_argument("--limit", type=int, default=100, help="rows to list")
        drill = actions.add_parser("drill", help="send a failing task and wait for its row")
        drill.add_argument("--timeout", type=float, default=15.0, help="seconds to wait")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "drill":
            self._drill(timeout=options["timeout"])
            return
        default_status: list[str] | None = {
            "requeue": [str(status) for status in REQUEUEABLE],
            "discard": [str(status) for status in DISCARDABLE],
            "purge": ["discarded", "resolved"]}.get(action)
        rows = dead_letters_matching(
            ids=options["ids"], task=options["task"], queue=options["queue"],
            statuses=options["status"] or default_status, older_than=options["older_than"],
        )
        missing = set(options["ids"]) - set(rows.values_list("pk", flat=True))
        if missing:
            raise CommandError(f"no matching dead letter with id {sorted(missing)}")
        if action == "list":
            self._list(rows[: options["limit"]])
        elif action == "purge":
            self.stdout.write(f"purged {dead_letters_purge(rows=rows)} dead letter(s)")
        elif action == "requeue":
            self._requeue(rows)
        else:
            self._discard(rows)

    def _list(self, rows: QuerySet[DeadLetter]) -> None:
        self.stdout.write(f"{'id':>6}  {'status':9}  {'queue':8}  {'failed at':19}  "
                          f"{'tries':>5}  task / exception / payload")
        for row in rows:
            self.stdout.write(
                f"{row.pk:>6}  {row.status:9}  {row.queue:8}  "
                f"{row.failed_at:%Y-%m-%d %H:%M:%S}  {row.attempts:>5}  {row.task_name}\n"
                f"{'':>58}{row.exception_type}: {row.message[:100]}\n"
                f"{'':>58}args={redact(row.args)} kwargs={redact(row.kwargs)}"
            )

    def _requeue(self, rows: QuerySet[DeadLetter]) -> None:
        outcome = dead_letters_requeue(dead_letter_ids=list(rows.values_list("pk", flat=True)),
                                       actor=f"cli:{_user()}")
        for pk, replay_task_id in outcome.requeued.items():
            self.stdout.write(f"requeued dead letter {pk} as {replay_task_id}")
        if outcome.refused:
            raise CommandError("; ".join(outcome.refused.values()))

    def _discard(self, rows: QuerySet[DeadLetter]) -> None:
        outcome = dead_letters_discard(dead_letter_ids=list(rows.values_list("pk", flat=True)),
                                       actor=f"cli:{_user()}")
        for pk in outcome.discarded:
            self.stdout.write(f"discarded dead letter {pk}")
        if outcome.refused:
            raise CommandError("; ".join(outcome.refused.values()))

    def _drill(self, *, timeout: float) -> None:
        task_id = uuid()
        started = time.monotonic()
        dead_letter_drill.apply_async(args=("post-deploy fire drill",), task_id=task_id)
        while time.monotonic() - started < timeout:
            row = DeadLetter.objects.filter(task_id=task_id).first()
            if row is not None:
                elapsed = time.monotonic() - started
                dead_letters_discard(dead_letter_ids=[row.pk], actor="dlq drill")
                self.stdout.write(f"drill passed: dead letter {row.pk} recorded from queue "
                                  f"{row.queue} in {elapsed * 1000:.0f} ms, then discarded")
                return
            time.sleep(0.05)
        raise CommandError(f"drill failed: no dead letter for task {task_id} within "
                           f"{timeout:.0f}s; is worker-critical running?")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
