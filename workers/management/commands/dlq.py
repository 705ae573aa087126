"""`manage.py dlq ...`: dead-letter triage for scripts, the same operations as the admin.

list, requeue, discard, purge, acknowledge, snooze, redrive, export take the same filters
(ids, --task, --queue, --status, --older-than, --fingerprint); groups lists causes; redrive starts a
background redrive (rate, canary, failure threshold) and can --wait for it; show prints one
row in full; edit replaces
a row's arguments (checked against the task) and requeues it; redrive-status,
redrive-pause, redrive-resume and redrive-cancel control one; note adds a note; drill
proves the path end to end. Errors exit non-zero with a one-line reason.
"""

import getpass
import re
import time
from datetime import timedelta
from typing import Any

from celery.utils import uuid
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from workers.core.redaction import redact_call, redact_text, visible_line
from workers.dead_letters.edits import EditRefused, dead_letter_edit_requeue
from workers.dead_letters.export import FORMATS, dead_letters_export
from workers.dead_letters.lifecycle import (
    dead_letter_note,
    dead_letters_acknowledge,
    dead_letters_snooze,
)
from workers.dead_letters.models import DeadLetter, Redrive
from workers.dead_letters.redrive import (
    ACTIVE,
    redrive_cancel,
    redrive_draft,
    redrive_pause,
    redrive_progress,
    redrive_resume,
    redrive_start,
)
from workers.dead_letters.rules import ELIGIBLE, Action
from workers.dead_letters.selectors import dead_letter_groups, dead_letters_matching
from workers.dead_letters.services import (
    dead_letters_discard,
    dead_letters_purge,
    dead_letters_requeue,
)
from workers.dead_letters.shown import shown_text
from workers.dead_letters.tasks import dead_letter_drill
from workers.management.operator_command import OperatorCommand

DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    match = DURATION.match(text)
    if not match:
        raise CommandError(f"--older-than and --for take a number and a unit (30m, 12h, 7d), "
                           f"not {text!r}")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


class Command(OperatorCommand):
    help = "List, requeue, discard or purge dead letters, or run a dead-letter fire drill."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        for name, text in (("list", "show matching dead letters"),
                           ("requeue", "send matching dead letters to their queue again"),
                           ("discard", "mark matching dead letters as not to be replayed"),
                           ("purge", "delete matching dead letters (closed ones "
                                     "unless --status says otherwise)"),
                           ("acknowledge", "mark matching open dead letters as seen"),
                           ("snooze", "hide matching open dead letters for --for"),
                           ("redrive", "replay matching dead letters in the background: a "
                                       "canary, then at --rate, pausing on failures"),
                           ("export", "print matching dead letters as CSV or JSON "
                                      "(payloads redacted)")):
            sub = actions.add_parser(name, help=text)
            sub.add_argument("ids", nargs="*", type=int, help="dead letter ids")
            sub.add_argument("--task", help="task name")
            sub.add_argument("--queue", help="queue name")
            sub.add_argument("--status", action="append", choices=DeadLetter.Status.values,
                             help="status (repeatable)")
            sub.add_argument("--older-than", type=parse_duration, help="e.g. 30m, 12h, 7d")
            sub.add_argument("--fingerprint", help="one cause (see `dlq groups`)")
            sub.add_argument("--limit", type=int, default=100, help="rows to list")
            if name == "export":
                sub.add_argument("--format", choices=FORMATS, default="csv")
            if name == "snooze":
                sub.add_argument("--for", dest="snooze_for", type=parse_duration,
                                 required=True, help="e.g. 2h, 1d")
            if name == "redrive":
                sub.add_argument("--rate", type=float, default=50.0, help="replays a second")
                sub.add_argument("--canary", type=int, default=10, help="sent first")
                sub.add_argument("--max-failure-rate", type=float, default=0.2,
                                 help="pause above this share of failed replays (0-1)")
                sub.add_argument("--to-queue", default="", help="instead of the original")
                sub.add_argument("--wait", action="store_true", help="follow until it stops")
        groups = actions.add_parser("groups", help="dead letters grouped by cause")
        groups.add_argument("--all", action="store_true", help="causes with no open rows too")
        for name in ("redrive-status", "redrive-pause", "redrive-resume", "redrive-cancel"):
            verb = name.split("-")[1]
            control = actions.add_parser(name, help="a redrive's progress" if verb == "status"
                                         else f"{verb} a redrive")
            control.add_argument("redrive_id", type=int)
            if name == "redrive-resume":
                control.add_argument("--canary", type=int, default=None,
                                     help="canary before going on (default: the redrive's)")
                control.add_argument("--skip-failed", action="store_true",
                                     help="do not replay again the rows that failed before "
                                          "the pause")
        show = actions.add_parser("show", help="one dead letter in full (payload redacted), "
                                  "with its earlier errors and history")
        show.add_argument("id", type=int, help="dead letter id")
        edit = actions.add_parser("edit", help="replace a dead letter's arguments (checked "
                                  "against the task) and requeue it")
        edit.add_argument("id", type=int, help="dead letter id")
        edit.add_argument("payload", help='JSON: {"args": [...], "kwargs": {...}}')
        edit.add_argument("--reason", required=True, help="why (kept in the audit trail)")
        note = actions.add_parser("note", help="add a note to a dead letter or a cause")
        note.add_argument("text")
        note.add_argument("--id", type=int, help="dead letter id")
        note.add_argument("--fingerprint", help="a cause (see `dlq groups`)")
        drill = actions.add_parser("drill", help="send a failing task and wait for its row")
        drill.add_argument("--timeout", type=float, default=15.0, help="seconds to wait")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "drill":
            self._drill(timeout=options["timeout"])
            return
        if action == "groups":
            self._groups(open_only=not options["all"])
            return
        if action.startswith("redrive-"):
            self._control(action, options)
            return
        if action == "note":
            self._note(options)
            return
        if action == "show":
            self._show(options["id"])
            return
        if action == "edit":
            try:
                replay = dead_letter_edit_requeue(dead_letter_id=options["id"],
                                                  payload=options["payload"],
                                                  reason=options["reason"],
                                                  actor=f"cli:{_user()}")
            except EditRefused as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"edited dead letter {options['id']} and requeued it as {replay}")
            return
        # By default a filter matches the rows the action may touch. Ids named one by one
        # are taken as named, so the service says why it refuses one (a discarded row is
        # "discarded: kept for the record", not "no such row"); a purge keeps its default.
        default_status = (list(ELIGIBLE[Action(action)])
                          if action in Action.__members__.values()
                          and (action == Action.PURGE or not options["ids"]) else None)
        rows = dead_letters_matching(
            ids=options["ids"], task=options["task"], queue=options["queue"],
            statuses=options["status"] or default_status, older_than=options["older_than"],
            fingerprint=options["fingerprint"],
        )
        missing = set(options["ids"]) - set(rows.values_list("pk", flat=True))
        if missing:
            raise CommandError(f"no matching dead letter with id {sorted(missing)}")
        if action == "list":
            self._list(rows[: options["limit"]])
        elif action == "purge":
            purged = dead_letters_purge(rows=rows, actor=f"cli:{_user()}",
                                        detail={"filter": _filter_text(options)})
            self.stdout.write(f"purged {purged} dead letter(s)")
        elif action == "requeue":
            self._requeue(rows, options)
        elif action == "acknowledge":
            done = dead_letters_acknowledge(dead_letter_ids=rows.values_list("pk", flat=True),
                                            actor=f"cli:{_user()}")
            self.stdout.write(f"acknowledged {done} dead letter(s)")
        elif action == "snooze":
            until = timezone.now() + options["snooze_for"]
            done = dead_letters_snooze(dead_letter_ids=rows.values_list("pk", flat=True),
                                       until=until, actor=f"cli:{_user()}")
            self.stdout.write(f"snoozed {done} dead letter(s) until {until:%Y-%m-%d %H:%M}")
        elif action == "redrive":
            self._redrive(rows, options)
        elif action == "export":
            self.stdout.write(dead_letters_export(rows=rows, file_format=options["format"],
                                                  actor=f"cli:{_user()}",
                                                  detail={"filter": _filter_text(options)}),
                              ending="")
        else:
            self._discard(rows, options)

    def _show(self, dead_letter_id: int) -> None:
        row = DeadLetter.objects.filter(pk=dead_letter_id).first()
        if row is None:
            raise CommandError(f"no dead letter with id {dead_letter_id}")
        for label, value in (
                ("task", visible_line(f"{row.task_name}[{row.task_id}] on {row.queue or '?'}")),
                ("status", row.status + (f" until {row.snoozed_until:%Y-%m-%d %H:%M}"
                                         if row.snoozed_until else "")),
                ("cause", f"{row.fingerprint} {visible_line(row.exception_type)}: "
                          f"{shown_text(row=row, text=row.message)}"),
                ("failed", f"{row.failed_at:%Y-%m-%d %H:%M:%S} after {row.attempts} "
                           f"attempt(s) on {visible_line(row.worker or '?')}"),
                ("payload", _payload(row)),
                ("replay of", row.replay_of_id or "-")):
            self.stdout.write(f"{label:>10}  {value}")
        for entry in row.attempt_errors:
            self.stdout.write(f"{'attempt ' + str(entry['attempt']):>10}  "
                              f"{visible_line(entry['exception_type'])}: "
                              f"{shown_text(row=row, text=entry['message'])}")
        for event in row.events.order_by("at"):
            self.stdout.write(f"{event.at:%Y-%m-%d %H:%M}  {visible_line(event.actor)}: "
                              f"{event.get_action_display()} {visible_line(event.text)}".rstrip())

    def _groups(self, *, open_only: bool) -> None:
        self.stdout.write(f"{'fingerprint':16}  {'open':>6}  {'all':>6}  {'24h':>5}  "
                          f"{'last seen':16}  task / exception / example")
        for group in dead_letter_groups(open_only=open_only):
            self.stdout.write(
                f"{group.fingerprint:16}  {group.open:>6}  {group.count:>6}  "
                f"{group.last_day:>5}  {group.last_seen:%Y-%m-%d %H:%M}  "
                f"{visible_line(group.task_name)}\n{'':>57}{visible_line(group.exception_type)}: "
                f"{visible_line(redact_text(group.example)[:100])}")

    def _redrive(self, rows: QuerySet[DeadLetter], options: dict[str, Any]) -> None:
        try:
            with transaction.atomic():  # refused settings leave no draft behind
                redrive = redrive_draft(
                    dead_letter_ids=list(rows.values_list("pk", flat=True)),
                    actor=f"cli:{_user()}", description=f"cli filter {_filter_text(options)}")
                redrive = redrive_start(
                    redrive_id=redrive.pk, actor=f"cli:{_user()}", rate=options["rate"],
                    canary=options["canary"], max_failure_rate=options["max_failure_rate"],
                    queue=options["to_queue"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"redrive {redrive.pk} started: {len(redrive.dead_letter_ids)} "
                          f"dead letter(s), canary {options['canary']}, {options['rate']:g}/s")
        if options["wait"]:
            while redrive.status in ACTIVE:
                time.sleep(1)
                redrive.refresh_from_db()
                self._status(redrive)
            if redrive.status != Redrive.Status.DONE:
                raise CommandError(f"redrive {redrive.pk} {redrive.status}: "
                                   f"{redrive.status_reason}")

    def _control(self, action: str, options: dict[str, Any]) -> None:
        redrive_id = options["redrive_id"]
        redrive = Redrive.objects.filter(pk=redrive_id).first()
        if redrive is None:
            raise CommandError(f"no redrive with id {redrive_id}")
        actor = f"cli:{_user()}"
        try:
            if action == "redrive-pause":
                redrive = redrive_pause(redrive_id=redrive_id, actor=actor)
            elif action == "redrive-cancel":
                redrive = redrive_cancel(redrive_id=redrive_id, actor=actor)
            elif action == "redrive-resume":
                redrive = redrive_resume(redrive_id=redrive_id, actor=actor,
                                         canary=options["canary"],
                                         retry_failed=not options["skip_failed"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        self._status(redrive)

    def _status(self, redrive: Redrive) -> None:
        figures = redrive_progress(redrive)
        self.stdout.write(
            f"redrive {redrive.pk} {redrive.status}: {figures.percent}% of {figures.total} "
            f"finished, {figures.sent} sent, {figures.succeeded} succeeded, {figures.failed} "
            f"failed again, {figures.in_flight} in flight, {figures.skipped} skipped, "
            f"{figures.not_sent} not sent yet"
            + (f" ({redrive.status_reason})" if redrive.status_reason else ""))

    def _note(self, options: dict[str, Any]) -> None:
        row = None
        if options["id"] is not None:
            row = DeadLetter.objects.filter(pk=options["id"]).first()
            if row is None:
                raise CommandError(f"no dead letter with id {options['id']}")
        try:
            dead_letter_note(actor=f"cli:{_user()}", text=options["text"], dead_letter=row,
                             fingerprint=options["fingerprint"] or "")
        except ValueError as error:
            raise CommandError(str(error)) from error
        self.stdout.write("noted")

    def _list(self, rows: QuerySet[DeadLetter]) -> None:
        self.stdout.write(f"{'id':>6}  {'status':9}  {'queue':8}  {'failed at':19}  "
                          f"{'tries':>5}  task / exception / payload")
        for row in rows:
            self.stdout.write(
                f"{row.pk:>6}  {row.status:9}  {visible_line(row.queue):8}  "
                f"{row.failed_at:%Y-%m-%d %H:%M:%S}  {row.attempts:>5}  "
                f"{visible_line(row.task_name)}\n{'':>58}{visible_line(row.exception_type)}: "
                f"{visible_line(shown_text(row=row, text=row.message)[:100])}\n"
                f"{'':>58}{_payload(row)}"
            )

    def _requeue(self, rows: QuerySet[DeadLetter], options: dict[str, Any]) -> None:
        ids = self._matching_ids(rows, options)
        if not ids:
            return
        outcome = dead_letters_requeue(dead_letter_ids=ids,
                                       actor=f"cli:{_user()}",
                                       detail={"filter": _filter_text(options)})
        for pk, replay_task_id in outcome.requeued.items():
            self.stdout.write(f"requeued dead letter {pk} as {replay_task_id}")
        if outcome.refused:
            raise CommandError("; ".join(outcome.refused.values()))

    def _discard(self, rows: QuerySet[DeadLetter], options: dict[str, Any]) -> None:
        ids = self._matching_ids(rows, options)
        if not ids:
            return
        outcome = dead_letters_discard(dead_letter_ids=ids,
                                       actor=f"cli:{_user()}",
                                       detail={"filter": _filter_text(options)})
        for pk in outcome.discarded:
            self.stdout.write(f"discarded dead letter {pk}")
        if outcome.refused:
            raise CommandError("; ".join(outcome.refused.values()))

    def _matching_ids(self, rows: QuerySet[DeadLetter], options: dict[str, Any]) -> list[int]:
        """The selection's ids; when there are none, say so: a silent exit read as "done"."""
        ids = list(rows.values_list("pk", flat=True))
        if not ids:
            self.stdout.write(f"no dead letter matches ({_filter_text(options)}): nothing done")
        return ids

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


def _payload(row: DeadLetter) -> str:
    """The row's call as the admin shows it: secrets redacted, positional ones included."""
    args, kwargs = redact_call(task_name=row.task_name, args=row.args, kwargs=row.kwargs)
    return f"args={args} kwargs={kwargs}"


def _filter_text(options: dict[str, Any]) -> str:
    chosen = {name: options[name] for name in ("ids", "task", "queue", "status", "fingerprint")
              if options.get(name)}
    return str(chosen or "all open")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
