"""Which dead letters each action may touch, and why the others are left out.

One table for the services, the admin and the CLI, so that what a page offers and what a
service does cannot disagree (a copy in the admin would let "select all" send rows the
services refuse). The services apply it to every call; the admin and the CLI show it
before asking.
"""

import inspect
from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache

from workers.core.task_backend import RUNNER, standard_call_refusal
from workers.core.task_registry import project_task
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.storable import call_was_escaped

Status = DeadLetter.Status

#: Failures still waiting for a decision.
OPEN = (Status.NEW, Status.ACKNOWLEDGED, Status.SNOOZED)
#: Settled: nobody acts on it any more, and retention may delete it.
CLOSED = (Status.RESOLVED, Status.SUPERSEDED, Status.DISCARDED)


class Action(StrEnum):
    REQUEUE = "requeue"
    REDRIVE = "redrive"
    EDIT = "edit"
    DISCARD = "discard"
    ACKNOWLEDGE = "acknowledge"
    SNOOZE = "snooze"
    PURGE = "purge"


#: The statuses each action applies to. Discarded rows ("keep for the record, never
#: replay") and resolved ones are never replayed by any path; requeued rows already have
#: their replay coming (one that fails again comes back as a new row).
ELIGIBLE: dict[Action, tuple[str, ...]] = {
    Action.REQUEUE: OPEN,
    Action.REDRIVE: OPEN,
    Action.EDIT: OPEN,
    Action.DISCARD: OPEN,
    Action.ACKNOWLEDGE: OPEN,
    Action.SNOOZE: OPEN,
    Action.PURGE: CLOSED,
}

#: What a row in each status is, said once for every refusal.
WHY_NOT: dict[str, str] = {
    Status.NEW: "new",
    Status.ACKNOWLEDGED: "acknowledged",
    Status.SNOOZED: "snoozed",
    Status.REQUEUED: "requeued: its replay is already on its way",
    Status.DISCARDED: "discarded: kept for the record, never replayed",
    Status.RESOLVED: "resolved: its replay succeeded",
    Status.SUPERSEDED: "superseded: its replay failed again and is a newer row",
}

REPLAYS = (Action.REQUEUE, Action.REDRIVE)


def refusal(action: Action, row: DeadLetter) -> str:
    """Why `action` may not touch `row`, or "" if it may. The reason names no id, so a
    confirmation page can count the rows left out for each reason."""
    if row.status not in ELIGIBLE[action]:
        return WHY_NOT.get(row.status, row.status)
    if action in REPLAYS:
        return replay_blocker(row)
    if action == Action.EDIT and not replayable(row):
        return "a message with no usable task call (see its raw body)"
    return ""


def replayable(row: DeadLetter) -> bool:
    """A row holds a call to replay unless it came from a message with no usable task."""
    return bool(row.task_name) and not row.raw_body


def replay_blocker(row: DeadLetter) -> str:
    """Why replaying the row as it stands cannot succeed ("" if it can): no call to
    replay, arguments stored escaped (not the call that failed, and never edited since),
    a task this codebase does not define, or arguments the task does not take. Edit (new
    arguments) or discard is the way out of each."""
    if not replayable(row):
        return "a message with no usable task call (see its raw body): discard it"
    if call_was_escaped(row.message) and row.original_args is None:
        return ("arguments stored escaped (they held NUL, surrogates or NaN, which "
                "PostgreSQL cannot store): edit them or discard it")
    refused = call_refusal(row.task_name, row.args, row.kwargs)
    if not refused:
        return ""
    if project_task(row.task_name) is None:
        return f"{refused}: deploy the task, or discard it"
    return f"{refused}: edit them, or discard it"


def call_refusal(task_name: str, args: object, kwargs: object) -> str:
    """Why `task_name(*args, **kwargs)` cannot run here ("" if it can)."""
    task = project_task(task_name)
    if task is None:
        return f"task {task_name} is not defined in this codebase"
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return f"{task_name}: stored arguments are not a list and an object"
    signature = _signature(task.run)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        return f"{task_name}{signature} does not accept these arguments ({error})"
    if task_name == RUNNER:  # the function it carries, and the call by its signature
        return standard_call_refusal(kwargs)
    return ""


@lru_cache(maxsize=1024)
def _signature(run: Callable[..., object]) -> inspect.Signature:
    """A task's signature, read once: a requeue checks every row's call against it, and
    reading it took a tenth of a 10,000-row requeue (docs/performance.md)."""
    return inspect.signature(run)
