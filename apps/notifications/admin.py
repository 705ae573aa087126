from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from apps.notifications.models import (
    TRANSACTIONAL_KINDS,
    Campaign,
    CampaignChunk,
    Notification,
    NotificationPreference,
)
from apps.notifications.services import campaign_start, notification_preference_set


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "recipient", "status", "attempts", "campaign", "created_at",
                    "sent_at")
    list_filter = ("status", "kind", "channel", "created_at")
    search_fields = ("recipient", "=idempotency_key", "=provider_message_id")
    readonly_fields = ("kind", "channel", "recipient", "user", "campaign", "subject",
                       "body_shown", "idempotency_key", "status", "attempts",
                       "provider_message_id", "last_error", "created_at", "sent_at",
                       "updated_at")
    exclude = ("body",)  # shown as body_shown
    list_select_related = ("campaign",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="body")
    def body_shown(self, notification: Notification) -> str:
        """A transactional message's body is not shown: it carries what its one reader may
        use (a password-reset link signs in as that user), and every account that may view
        notifications, a read-only one included, saw it here. A campaign's text, written
        in the admin, is."""
        if notification.kind in TRANSACTIONAL_KINDS:
            return (f"[hidden: {len(notification.body)} characters; a transactional message "
                    "can carry sign-in and password-reset links]")
        return notification.body


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("key", "kind", "status", "recipients_total", "sent", "failed", "chunks_total",
                    "created_at", "started_at")
    list_filter = ("kind", "status")
    readonly_fields = ("status", "recipients_total", "chunks_total", "created_at", "started_at")
    actions = ("start",)

    def get_readonly_fields(self, request: HttpRequest,
                            obj: Campaign | None = None) -> tuple[str, ...]:
        """A campaign that started is what its chunks send: an edit would give the chunks
        still to run another text, or another kind's audience and opt-outs."""
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            return tuple(field.name for field in Campaign._meta.fields)
        return tuple(self.readonly_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        sent, failed = Notification.Status.SENT, Notification.Status.FAILED
        return super().get_queryset(request).annotate(
            sent_count=Count("notifications", filter=Q(notifications__status=sent)),
            failed_count=Count("notifications", filter=Q(notifications__status=failed)))

    @admin.display(description="sent", ordering="sent_count")
    def sent(self, campaign: Campaign) -> int:
        return campaign.sent_count  # type: ignore[attr-defined]  # get_queryset annotates

    @admin.display(description="failed", ordering="failed_count")
    def failed(self, campaign: Campaign) -> int:
        return campaign.failed_count  # type: ignore[attr-defined]  # get_queryset annotates

    @admin.action(description="Start sending", permissions=["change"])
    def start(self, request: HttpRequest, rows: QuerySet[Campaign]) -> None:
        for campaign in rows:
            campaign_start(campaign_id=campaign.pk)
        self.message_user(request, f"{rows.count()} campaign(s) sending.", messages.SUCCESS)


@admin.register(CampaignChunk)
class CampaignChunkAdmin(admin.ModelAdmin):
    """Which ranges of a campaign are still pending: a chunk that stays so has its job
    retrying or in the dead letters. Written by the fan-out and the chunks only."""
    list_display = ("campaign", "first_user_id", "last_user_id", "status")
    list_filter = ("status",)
    list_select_related = ("campaign",)
    search_fields = ("=campaign__key",)
    readonly_fields = ("campaign", "first_user_id", "last_user_id", "status")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "digest_opt_out", "newsletter_opt_out", "updated_at")
    list_filter = ("digest_opt_out", "newsletter_opt_out")
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request: HttpRequest,
                            obj: NotificationPreference | None = None) -> tuple[str, ...]:
        """A preference stays its user's: moved to another, the first user's choices
        would be gone without their campaigns hearing of it."""
        return ("user",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: NotificationPreference, form: ModelForm,
                   change: bool) -> None:
        """Through the service, so that an opt-out also holds for campaigns already
        sending."""
        saved = notification_preference_set(user_id=obj.user_id,
                                            digest_opt_out=obj.digest_opt_out,
                                            newsletter_opt_out=obj.newsletter_opt_out)
        obj.pk, obj.updated_at = saved.pk, saved.updated_at
