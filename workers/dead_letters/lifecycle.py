"""Triage states short of a replay: acknowledge, snooze until a time, notes."""

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from workers.dead_letters.audit import dead_letter_audit
from workers.dead_letters.models import DeadLetter, DeadLetterEvent
from workers.dead_letters.rules import ELIGIBLE, Action


@transaction.atomic
def dead_letters_acknowledge(*, dead_letter_ids: Iterable[int], actor: str,
                             detail: dict | None = None) -> int:
    """Seen and owned: off the "new" count and the alerts' open fingerprints."""
    ids = list(dead_letter_ids)
    changed = DeadLetter.objects.filter(pk__in=ids, status__in=ELIGIBLE[Action.ACKNOWLEDGE]).update(
        status=DeadLetter.Status.ACKNOWLEDGED, snoozed_until=None, updated_at=timezone.now())
    dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.ACKNOWLEDGED, count=changed,
                      detail={"ids": ids[:1000], **(detail or {})})
    return changed


@transaction.atomic
def dead_letters_snooze(*, dead_letter_ids: Iterable[int], until: datetime, actor: str,
                        detail: dict | None = None) -> int:
    """Out of sight until `until`, then new again (beat's housekeeping wakes them)."""
    if until <= timezone.now():
        raise ValueError("a snooze must end in the future")
    ids = list(dead_letter_ids)
    changed = DeadLetter.objects.filter(pk__in=ids, status__in=ELIGIBLE[Action.SNOOZE]).update(
        status=DeadLetter.Status.SNOOZED, snoozed_until=until, updated_at=timezone.now())
    dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.SNOOZED, count=changed,
                      detail={"ids": ids[:1000], "until": until.isoformat(), **(detail or {})})
    return changed


def dead_letters_wake_snoozed(*, now: datetime) -> int:
    """Snoozes that ended: the rows are new again."""
    return DeadLetter.objects.filter(status=DeadLetter.Status.SNOOZED,
                                     snoozed_until__lte=now).update(
        status=DeadLetter.Status.NEW, snoozed_until=None, updated_at=now)


def dead_letter_note(*, actor: str, text: str, dead_letter: DeadLetter | None = None,
                     fingerprint: str = "") -> DeadLetterEvent:
    """A note on one row, or on a whole group (its fingerprint)."""
    if not text.strip():
        raise ValueError("a note needs some text")
    if dead_letter is None and not fingerprint:
        raise ValueError("a note belongs to a dead letter or a fingerprint")
    return dead_letter_audit(actor=actor, action=DeadLetterEvent.Action.NOTE,
                             dead_letter=dead_letter, fingerprint=fingerprint,
                             text=text.strip())
