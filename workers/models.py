"""The platform's models, for Django: each is defined beside the code that uses it."""

from workers.core.models import OutboxMessage, TaskEffect
from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive
from workers.ops.alerts.models import Alert

__all__ = ("Alert", "DeadLetter", "DeadLetterEvent", "OutboxMessage", "Redrive", "TaskEffect")
