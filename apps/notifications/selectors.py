"""Who receives a campaign."""

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from apps.notifications.models import Kind

OPT_OUT_FIELD: dict[str, str] = {Kind.DIGEST: "digest_opt_out",
                                 Kind.NEWSLETTER: "newsletter_opt_out"}


def campaign_audience(*, kind: str) -> QuerySet[Any]:
    """Active users with an address who have not opted out of this kind of campaign."""
    return (get_user_model().objects.filter(is_active=True).exclude(email="")
            .exclude(**{f"notification_preference__{OPT_OUT_FIELD[kind]}": True}))
