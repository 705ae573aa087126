"""Registers the platform's admin pages (Django imports this module of each app)."""

from workers.dead_letters import admin as dead_letters_admin
from workers.dead_letters import audit_admin, redrive_admin
from workers.ops import outbox_admin
from workers.ops.alerts import admin as alerts_admin

__all__ = ("alerts_admin", "audit_admin", "dead_letters_admin", "outbox_admin", "redrive_admin")
