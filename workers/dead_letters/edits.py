"""Edit and requeue: fix a dead letter's arguments, checked against the task, then replay.

A job that failed on bad input (a typo in an address, an id that moved) can be replayed
with corrected arguments. The edit is validated before anything changes: JSON of the right
shape, a task this codebase defines (not one of Celery's built-ins), arguments its
signature accepts. The row keeps the call as it failed (`original_args`,
`original_kwargs`) next to the edited one, and the audit trail records who, when, why
and the diff (of redacted payloads: the trail is for everyone who may see dead letters).
Values an operator saw redacted and left as they were keep their real value.
"""

import difflib
import json
from typing import Any

from django.db import transaction

from workers.api.redaction import REDACTED, redact
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.rules import Action, call_refusal, refusal
from workers.dead_letters.services import dead_letters_send_replays


class EditRefused(ValueError):
    """The edit is not valid; nothing was changed."""


def dead_letter_edit_requeue(*, dead_letter_id: int, payload: str, reason: str,
                             actor: str) -> str:
    """Replace the row's arguments with `payload` (JSON: {"args": [...], "kwargs": {...}})
    and requeue it; return the replay's task id."""
    if not reason.strip():
        raise EditRefused("say why the arguments change (it goes in the audit trail)")
    with transaction.atomic():
        row = DeadLetter.objects.select_for_update().filter(pk=dead_letter_id).first()
        if row is None:
            raise EditRefused(f"no dead letter with id {dead_letter_id}")
        refused = refusal(Action.EDIT, row)
        if refused:
            raise EditRefused(f"dead letter {row.pk} is {refused}; only open rows holding a "
                              "task call can be edited and requeued")
        args, kwargs = _parse(payload)
        args, kwargs = _unredacted(args, row.args), _unredacted(kwargs, row.kwargs)
        refused = call_refusal(row.task_name, args, kwargs)
        if refused:
            raise EditRefused(refused)
        before = {"args": row.args, "kwargs": row.kwargs}
        if row.original_args is None:
            row.original_args, row.original_kwargs = row.args, row.kwargs
        row.args, row.kwargs = args, kwargs
        row.save(update_fields=["args", "kwargs", "original_args", "original_kwargs",
                                "updated_at"])
        dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.EDITED, dead_letter=row,
                          text=reason.strip(), detail={"diff": _diff(before, {
                              "args": args, "kwargs": kwargs})})
        outcome = dead_letters_send_replays(dead_letter_ids=[row.pk], actor=actor)
    return outcome.requeued[row.pk]


def _parse(payload: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        data = json.loads(payload)
    except ValueError as error:
        raise EditRefused(f"not valid JSON: {error}") from error
    if not isinstance(data, dict) or set(data) - {"args", "kwargs"}:
        raise EditRefused('expected an object with "args" (a list) and "kwargs" (an object)')
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise EditRefused('"args" must be a list and "kwargs" an object')
    return args, kwargs


def _unredacted(edited: Any, original: Any) -> Any:
    """`edited`, with each value still shown as redacted taken from `original` (by key in
    objects, by position in lists)."""
    if edited == REDACTED:
        return original
    if isinstance(edited, dict) and isinstance(original, dict):
        return {key: _unredacted(value, original[key]) if key in original else value
                for key, value in edited.items()}
    if isinstance(edited, list) and isinstance(original, list):
        return [_unredacted(value, original[index]) if index < len(original) else value
                for index, value in enumerate(edited)]
    return edited


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    def lines(payload: dict[str, Any]) -> list[str]:
        return json.dumps(redact(payload), indent=2, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(lines(before), lines(after), "failed", "edited",
                                          lineterm=""))
