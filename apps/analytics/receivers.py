"""Analytics' answer to platform signals, connected in `AnalyticsConfig.ready()`."""

from typing import Any

from apps.analytics.services import export_mark_failed
from apps.analytics.tasks import run_export


def mark_export_failed(sender: str, args: list[Any], kwargs: dict[str, Any],
                       dead_letter_id: int | None = None, **_: Any) -> None:
    """An export whose job was dead-lettered without failing in its own code (its worker
    lost, its hard time limit) would otherwise show pending or running for good."""
    if sender != run_export.name:
        return
    export_id = args[0] if args else kwargs.get("export_id")
    if isinstance(export_id, int):
        export_mark_failed(export_id=export_id,
                           error=f"the export job failed (dead letter {dead_letter_id})")
