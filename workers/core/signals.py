"""Signals the platform sends to the apps.

`task_dead_lettered` is sent once per dead letter, after its row has committed, whichever
path put it there (a failure in the worker, a lost worker, a poison message, or the spool
drained after a database outage). Sender: the task's name; keyword arguments
`dead_letter_id`, `task_id`, `args`, `kwargs`, `exception_type`, `message`
(redacted). The platform's alerts start from it; an app
connects to it to mark its own record failed, so an operator sees the business object's
state match the dead-letter table. A receiver's error is logged and
never stops the dead letter from being kept.
"""

from django.dispatch import Signal

task_dead_lettered = Signal()
