"""A dead letter's error text as people see it: in the admin, `manage.py dlq`, exports and
alerts.

The worker keeps a call's secret arguments out of the error text it stores, but only
when it knows the task's signature; rows stored by a process that did not (or before it
learned to) still hold a password quoted bare (`login refused for ann using hunter2`).
So every place that shows the text hides the row's own call secrets again, looked up in
this process, and for a task it cannot find every string of the positional arguments."""
from __future__ import annotations

from workers.core.redaction import call_secrets, hide_values, redact_text, visible_text
from workers.dead_letters.models import DeadLetter


def redacted_text(*, row: DeadLetter, text: str, discover: bool = True) -> str:
    """`text` (the row's message, traceback or an earlier attempt's error) without the
    row's call secrets and anything else that looks like one: for files and alerts.
    `discover=False` in a worker's main process, which knows its tasks and must not
    import them again (`call_secrets`)."""
    hidden = call_secrets(task_name=row.task_name, args=row.args, kwargs=row.kwargs,
                          discover=discover)
    return redact_text(hide_values(text, hidden))


def shown_text(*, row: DeadLetter, text: str) -> str:
    """`redacted_text`, with the characters that hide or reorder what a person reads
    written out as escapes: for pages and terminals."""
    return visible_text(redacted_text(row=row, text=text))
