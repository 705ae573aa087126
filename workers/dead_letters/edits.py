"""Edit and requeue: fix a dead letter's arguments, checked against the task, then replay.

A job that failed on bad input (a typo in an address, an id that moved) can be replayed
with corrected arguments. The edit is validated before anything changes: JSON of the right
shape, a task this codebase defines (not one of Celery's built-ins), arguments its
signature accepts. The row keeps the call as it failed (`original_args`,
`original_kwargs`) next to the edited one, and the audit trail records who, when, why
and the diff (of redacted payloads: the trail is for everyone who may see dead letters;
a hidden value the edit changed reads "[redacted, changed]"). Values an operator saw
redacted and left as they were keep their real value, positional arguments included.
"""

import difflib
import json
from typing import Any

from django.db import transaction

from workers.core.json_input import JSONInputError, parse_json
from workers.core.redaction import REDACTED_CHANGED, redact_call
from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.rules import Action, call_refusal, refusal
from workers.dead_letters.services import dead_letters_send_replays

EDIT_MAX_DEPTH = 32
EDIT_MAX_BYTES = 1_000_000


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
        shown_args, shown_kwargs = redact_call(task_name=row.task_name, args=row.args,
                                               kwargs=row.kwargs)
        args = _unredacted(args, row.args, shown_args)
        kwargs = _unredacted(kwargs, row.kwargs, shown_kwargs)
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
                          text=reason.strip(), detail={"diff": _diff(
                              row.task_name, before, {"args": args, "kwargs": kwargs})})
        outcome = dead_letters_send_replays(dead_letter_ids=[row.pk], actor=actor)
    return outcome.requeued[row.pk]


def _parse(payload: str) -> tuple[list[Any], dict[str, Any]]:
    """The call an operator typed, refused if a row could not store it or a parser would
    choke on it: NUL, lone surrogates, NaN and the infinities, huge integers, deep nesting
    (each answered 500 from the admin and a traceback from the CLI)."""
    try:
        data = parse_json(payload.encode("utf-8", "surrogatepass"), max_depth=EDIT_MAX_DEPTH,
                          max_bytes=EDIT_MAX_BYTES)
    except JSONInputError as error:
        raise EditRefused(f"not valid JSON for a stored call: {error}") from error
    if not isinstance(data, dict) or set(data) - {"args", "kwargs"}:
        raise EditRefused('expected an object with "args" (a list) and "kwargs" (an object)')
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise EditRefused('"args" must be a list and "kwargs" an object')
    return args, kwargs


def _unredacted(edited: Any, original: Any, shown: Any) -> Any:
    """`edited`, with each value left as it was `shown` (redacted, wholly or in part) taken
    from `original`, at the same key in objects and the same position in lists: a hidden
    value never moves to where it would show."""
    if _same(edited, shown):
        return original
    if isinstance(edited, dict) and isinstance(original, dict) and isinstance(shown, dict):
        return {key: _unredacted(value, original[key], shown.get(key))
                if key in original else value for key, value in edited.items()}
    if isinstance(edited, list) and isinstance(original, list) and isinstance(shown, list):
        return [_unredacted(value, original[index], shown[index])
                if index < min(len(original), len(shown)) else value
                for index, value in enumerate(edited)]
    return edited


def _same(one: Any, other: Any) -> bool:
    """Equal as JSON (`1` is not `true`, nor `1.0`)."""
    return json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)


def _diff(task_name: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """The change, as viewers may see it: both sides redacted, and a hidden value that
    changed marked so (its old and new values stay hidden)."""
    def shown(payload: dict[str, Any]) -> dict[str, Any]:
        args, kwargs = redact_call(task_name=task_name, args=payload["args"],
                                   kwargs=payload["kwargs"])
        return {"args": args, "kwargs": kwargs}

    def lines(payload: dict[str, Any]) -> list[str]:
        return json.dumps(payload, indent=2, sort_keys=True).splitlines()

    shown_before = shown(before)
    shown_after = _hidden_changes(shown(after), after, shown_before, before)
    return "\n".join(difflib.unified_diff(lines(shown_before), lines(shown_after), "failed",
                                          "edited", lineterm=""))


def _hidden_changes(shown_after: Any, after: Any, shown_before: Any, before: Any) -> Any:
    """`shown_after`, with each value that reads the same as before once redacted but was
    changed replaced by REDACTED_CHANGED."""
    if all(isinstance(value, dict) for value in (shown_after, after, shown_before, before)):
        return {key: _hidden_changes(shown_after[key], after[key], shown_before[key],
                                     before[key]) if key in before else shown_after[key]
                for key in shown_after}
    if all(isinstance(value, list) for value in (shown_after, after, shown_before, before)):
        common = min(len(before), len(after))
        return [_hidden_changes(shown_after[index], after[index], shown_before[index],
                                before[index]) if index < common else shown_after[index]
                for index in range(len(shown_after))]
    if _same(shown_after, shown_before) and not _same(after, before):
        return REDACTED_CHANGED
    return shown_after
