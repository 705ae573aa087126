"""The two kinds of task failure. Every app error subclasses one of them.

The split is what decides a failed job's fate: a transient error is retried with backoff,
a permanent one goes to the dead-letter table at once. An exception that is neither is a
bug, and bugs are not retried either: replaying a bug five times only hides it.
"""


class TransientError(Exception):
    """The same call may succeed later: a timeout, a rate limit, a 5xx, a lock."""


class PermanentError(Exception):
    """Retrying cannot help: invalid input, a missing row, a rejected address."""


class RedeliveryLimitExceeded(PermanentError):
    """The message came back more often than the cap: it keeps killing its worker."""


class UnroutedTaskError(LookupError):
    """A task was sent that declares no queue (see `workers.core.routing`)."""
