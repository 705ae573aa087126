"""The dead-letter audit trail: every triage step is recorded with who, what and how many."""

from typing import Any

from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive


def dead_letter_audit(*, actor: str, action: str, dead_letter: DeadLetter | None = None,
                      fingerprint: str = "", redrive: Redrive | None = None, count: int = 1,
                      text: str = "", detail: dict[str, Any] | None = None) -> DeadLetterEvent:
    return DeadLetterEvent.objects.create(
        actor=actor, action=action, dead_letter=dead_letter, redrive=redrive,
        fingerprint=fingerprint or (dead_letter.fingerprint if dead_letter else ""),
        count=count, text=text, detail=detail or {})
