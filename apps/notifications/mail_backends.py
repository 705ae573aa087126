"""Django's console and in-memory email backends, taking a batch of recipients in one call
as a provider's batch API does (apps/notifications/providers.py): what `make dev`, the
tests and the benchmarks send campaigns through. A production provider's backend (its
API client) implements the same `send_batch`; SMTP has none and gets a message each.

Like a provider, they refuse an address that is not one, for that recipient alone.
"""

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core import mail
from django.core.mail.backends import console, locmem

from apps.notifications.providers import (
    BatchRecipient,
    RecipientOutcome,
    address_refusal,
    personalised,
)


@dataclass(frozen=True)
class SentBatch:
    """One batch as the in-memory backend keeps it (in `django.core.mail.batches`)."""
    subject: str
    body: str
    from_email: str
    recipients: list[BatchRecipient]


def _outcome(recipient: BatchRecipient) -> RecipientOutcome:
    if refusal := address_refusal(recipient.to):
        return RecipientOutcome(rejected=refusal)
    return RecipientOutcome(message_id=recipient.message_id)


class InMemoryBatchBackend(locmem.EmailBackend):
    """locmem's, plus batches kept whole in `mail.batches` (a message each would cost
    the MIME building a provider's batch API spares)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(mail, "batches"):
            mail.batches = []  # type: ignore[attr-defined]

    def send_batch(self, *, subject: str, body: str, from_email: str,
                   recipients: Sequence[BatchRecipient]) -> list[RecipientOutcome]:
        outcomes = [_outcome(recipient) for recipient in recipients]
        mail.batches.append(SentBatch(  # type: ignore[attr-defined]
            subject=subject, body=body, from_email=from_email,
            recipients=[recipient for recipient, outcome in zip(recipients, outcomes,
                                                                strict=True)
                        if not outcome.rejected]))
        return outcomes


class ConsoleBatchBackend(console.EmailBackend):
    """The console's, plus a batch written as one block: the message once, then each
    recipient with its variables applied to the subject."""

    _lock: threading.RLock

    def send_batch(self, *, subject: str, body: str, from_email: str,
                   recipients: Sequence[BatchRecipient]) -> list[RecipientOutcome]:
        outcomes = [_outcome(recipient) for recipient in recipients]
        lines = [f"Batch from {from_email}: {subject!r}", body, "-" * 79]
        lines += [f"{recipient.to} {recipient.message_id} "
                  f"{outcome.rejected or personalised(subject, recipient.variables)}"
                  for recipient, outcome in zip(recipients, outcomes, strict=True)]
        with self._lock:
            self.stream.write("\n".join(lines) + "\n" + "-" * 79 + "\n")
            self.stream.flush()
        return outcomes
