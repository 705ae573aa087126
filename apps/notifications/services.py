"""Transactional email (one message, `critical`) and campaigns (fan-out over `bulk`)."""

from collections.abc import Iterable
from datetime import date
from functools import cache, partial
from typing import NamedTuple, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg.pq.abc import PGresult

from apps.notifications.models import (
    TRANSACTIONAL_KINDS,
    Campaign,
    CampaignChunk,
    Kind,
    Notification,
    NotificationPreference,
    single_line,
)
from apps.notifications.providers import (
    BatchRecipient,
    EmailProvider,
    OutgoingEmail,
    RecipientDeferred,
    message_id_for,
)
from apps.notifications.selectors import OPT_OUT_FIELD, campaign_audience
from workers.core.exceptions import PermanentError, TransientError
from workers.core.one_round_trip import execute_in_one_round_trip
from workers.core.rate_limit import rate_limit_acquire

_Error = TypeVar("_Error", bound=Exception)


class NotificationNotFound(PermanentError):
    """The row was deleted (or never committed): nothing to send."""


@transaction.atomic
def notification_request(*, kind: str, recipient: str, subject: str, body: str,
                         idempotency_key: str, user_id: int | None = None) -> Notification:
    """Record a transactional message and send it through the outbox.

    The job is written in the caller's transaction, so a crash or a Redis outage right
    after the commit delays the password reset instead of losing it. Asking again with the
    same key returns the first row and sends nothing new, so callers can request "welcome
    for user 42" from a retried view or task without a second email.
    """
    from apps.notifications.tasks import send_notification

    if kind not in TRANSACTIONAL_KINDS:
        raise ValueError(f"{kind!r} is not a transactional kind; campaigns go through "
                         "campaign_create")
    notification, created = Notification.objects.get_or_create(
        idempotency_key=idempotency_key,
        defaults={"kind": kind, "recipient": recipient, "subject": subject, "body": body,
                  "user_id": user_id},
    )
    if created:
        send_notification.delay_via_outbox(notification.pk)
    return notification


def notification_send(*, notification_id: int) -> Notification:
    """Send one pending notification; a redelivered job finds it sent and stops.

    The row lock serialises two workers handed the same job. The attempt and its error are
    committed before a provider error propagates, so the admin shows what happened.
    """
    error: Exception | None = None
    with transaction.atomic():
        try:
            notification = Notification.objects.select_for_update().get(pk=notification_id)
        except Notification.DoesNotExist as exc:
            raise NotificationNotFound(f"notification {notification_id} does not exist") from exc
        if notification.status != Notification.Status.PENDING:
            return notification
        try:
            with EmailProvider() as provider:
                _deliver(provider, notification)
        except (TransientError, PermanentError) as exc:
            error = _record_failure(notification, exc)
        notification.save()
    if error is not None:
        raise error
    return notification


@transaction.atomic
def campaign_create(*, kind: str, key: str, subject: str, body: str,
                    chunk_size: int | None = None) -> Campaign:
    """A draft campaign; the same key returns the existing one. Without `chunk_size`, the
    model's default (NOTIFICATIONS_CHUNK_SIZE). A subject with a line break is refused
    (ValidationError), as the admin refuses it."""
    single_line(subject)
    defaults: dict[str, object] = {"kind": kind, "subject": subject, "body": body}
    if chunk_size is not None:
        defaults["chunk_size"] = chunk_size
    campaign, _ = Campaign.objects.get_or_create(key=key, defaults=defaults)
    return campaign


@transaction.atomic
def campaign_start(*, campaign_id: int) -> Campaign:
    """Start sending a draft campaign (once: starting it again changes nothing)."""
    from apps.notifications.tasks import fan_out_campaign

    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    if campaign.status == Campaign.Status.DRAFT:
        campaign.status = Campaign.Status.SENDING
        campaign.started_at = timezone.now()
        campaign.save(update_fields=["status", "started_at"])
        fan_out_campaign.delay_via_outbox(campaign.pk)
    return campaign


def campaign_fan_out(*, campaign_id: int) -> int:
    """Split the audience into id ranges of `chunk_size` users, one bulk task each.

    Ranges keep each message small; a redelivered fan-out sends the same ranges again,
    which the chunks absorb (rows are unique per campaign and user). Each range is a
    CampaignChunk row, and its job goes through the outbox: no chunk task runs before
    every chunk row is committed, so none can find the others missing and call the
    campaign done. With nobody to send to, the campaign is done here.
    """
    from apps.notifications.tasks import send_campaign_chunk

    campaign = Campaign.objects.get(pk=campaign_id)
    user_ids = list(campaign_audience(kind=campaign.kind).order_by("id")
                    .values_list("id", flat=True))
    ranges = [(chunk[0], chunk[-1]) for chunk in
              (user_ids[i:i + campaign.chunk_size]
               for i in range(0, len(user_ids), campaign.chunk_size))]
    CampaignChunk.objects.bulk_create(
        [CampaignChunk(campaign_id=campaign_id, first_user_id=first, last_user_id=last)
         for first, last in ranges], ignore_conflicts=True)
    Campaign.objects.filter(pk=campaign_id).update(recipients_total=len(user_ids),
                                                   chunks_total=len(ranges))
    for first_user_id, last_user_id in ranges:
        send_campaign_chunk.delay_via_outbox(campaign_id, first_user_id, last_user_id)
    _campaign_finish_if_done(campaign_id=campaign_id)
    return len(ranges)


def campaign_send_chunk(*, campaign_id: int, first_user_id: int, last_user_id: int) -> int:
    """Send the campaign to the users in one id range; return how many were sent.

    Each batch is as large as the shared rate limit grants and is committed on its own, so
    a crash re-sends at most one batch; rows locked by a duplicate of this task are skipped.
    Once the range has nothing pending, the chunk is done, and so is the campaign if it was
    the last. Recipients whose server asked to be tried later stay pending while the rest
    are sent, and the chunk then raises RecipientDeferred, so that its retry sends them.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    _create_chunk_notifications(campaign=campaign, first_user_id=first_user_id,
                                last_user_id=last_user_id)
    sent, deferred, after_user_id = 0, [], first_user_id - 1
    with EmailProvider() as provider:
        while True:
            granted = rate_limit_acquire(name=provider.name,
                                         per_second=settings.NOTIFICATIONS_RATE_PER_SECOND,
                                         amount=settings.NOTIFICATIONS_SEND_BATCH)
            with transaction.atomic():
                batch = _claim(campaign_id=campaign_id, after_user_id=after_user_id,
                               last_user_id=last_user_id, limit=granted)
                if not batch:
                    break
                sent_now, deferred_now, error = _deliver_batch(provider, batch)
            sent += sent_now
            deferred += deferred_now
            if error is not None:
                raise error
            after_user_id = batch[-1].user_id
    _chunk_finish(campaign_id=campaign_id, first_user_id=first_user_id,
                  last_user_id=last_user_id)
    if deferred:
        raise RecipientDeferred(f"{len(deferred)} recipient(s) to try again later; the "
                                f"first: {deferred[0]}")
    return sent


#: The PostgreSQL advisory lock that orders a chunk's reading of its audience and an
#: opt-out: each waits for the other to commit, so the opt-out either is seen by the chunk
#: or sees the chunk's rows.
AUDIENCE_LOCK = 0x6E6F74696669  # "notifi", a constant no other lock of the project uses


def notification_preference_set(*, user_id: int, digest_opt_out: bool,
                                newsletter_opt_out: bool) -> NotificationPreference:
    """Store a user's choices, and keep every campaign of a kind they opt out of from
    reaching them from the commit on.

    A chunk writes its recipients' rows from the audience when it begins, so a campaign
    already sending holds pending rows for users who opt out afterwards. Those rows are
    failed with the reason in the same transaction. The audience lock, taken once the
    choice is written and only for an opt-out, keeps a chunk from reading the audience
    until this commits, and waits for a chunk that read it before, so that its rows are
    seen here. A batch sending to the user at this moment is waited for, and its outcome
    stands. A chunk that skipped the row while this held it is finished after the commit.
    The claim does not look the preference up per recipient instead: that would be a
    lookup on every send, for a change this rare.
    """
    with transaction.atomic():
        preference, _ = NotificationPreference.objects.update_or_create(
            user_id=user_id, defaults={"digest_opt_out": digest_opt_out,
                                       "newsletter_opt_out": newsletter_opt_out})
        kinds = [kind for kind, field in OPT_OUT_FIELD.items() if getattr(preference, field)]
        if not kinds:
            return preference
        _audience_lock(shared=False)
        pending = Notification.objects.filter(
            user_id=user_id, kind__in=kinds, campaign__isnull=False,
            status=Notification.Status.PENDING)
        for campaign_id in set(pending.values_list("campaign_id", flat=True)):
            transaction.on_commit(partial(_chunk_of_user_finish, campaign_id=campaign_id,
                                          user_id=user_id), robust=True)
        pending.update(status=Notification.Status.FAILED, updated_at=timezone.now(),
                       last_error="the user opted out before it was sent")
    return preference


def _audience_lock(*, shared: bool) -> None:
    """AUDIENCE_LOCK until the transaction ends (PostgreSQL; SQLite runs one writer)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s)",
                       [AUDIENCE_LOCK])


def _chunk_of_user_finish(*, campaign_id: int, user_id: int) -> None:
    """Finish the chunk whose range holds the user, if nothing in it is pending now."""
    chunk = CampaignChunk.objects.filter(
        campaign_id=campaign_id, first_user_id__lte=user_id, last_user_id__gte=user_id,
    ).values_list("first_user_id", "last_user_id").first()
    if chunk is not None:
        _chunk_finish(campaign_id=campaign_id, first_user_id=chunk[0], last_user_id=chunk[1])


def _claim(*, campaign_id: int, after_user_id: int, last_user_id: int,
           limit: int) -> list["_Pending"]:
    """Lock and return up to `limit` pending rows of the range's users after
    `after_user_id`, in user order, skipping rows a duplicate of this task holds, inside
    the caller's transaction.

    In the order of the campaign's index and after the last batch, PostgreSQL reads the
    rows it returns and no others, where ordering by id made it read and sort every row
    still pending in the range for each batch. The statement goes with the transaction's
    `BEGIN`, one round trip where psycopg's cursor takes two, and without the ORM, whose
    building of it cost as much as running it (docs/performance.md). Tuples, not models:
    building a model per recipient cost more than its row."""
    values = (campaign_id, Notification.Status.PENDING, after_user_id, last_user_id, limit)
    if connection.vendor != "postgresql":  # SQLite, `make dev`'s default: no row locks
        with connection.cursor() as cursor:
            cursor.execute(_claim_statement("%s", lock=""), values)
            return [_Pending(*row) for row in cursor.fetchall()]
    rows = execute_in_one_round_trip(
        _claim_statement("{}", lock=" FOR UPDATE SKIP LOCKED"), values)
    return [_Pending(int(_text(rows, row, 0)), _text(rows, row, 1), _text(rows, row, 2),
                     _text(rows, row, 3), int(_text(rows, row, 4)))
            for row in range(rows.ntuples)]


@cache
def _claim_statement(placeholder: str, *, lock: str) -> str:
    """The claim with `placeholder` for each of its five values."""
    table = connection.ops.quote_name(Notification._meta.db_table)
    return (f"SELECT id, recipient, subject, body, user_id FROM {table} "  # noqa: S608
            f"WHERE campaign_id = {placeholder} AND status = {placeholder} "
            f"AND user_id > {placeholder} AND user_id <= {placeholder} "
            f"ORDER BY user_id LIMIT {placeholder}{lock}")


def _text(rows: PGresult, row: int, column: int) -> str:
    """A NOT NULL value of a result in text form."""
    return (rows.get_value(row, column) or b"").decode()


def _create_chunk_notifications(*, campaign: Campaign, first_user_id: int,
                                last_user_id: int) -> None:
    """A row per recipient of the range, in one INSERT ... SELECT from the audience query:
    the recipients never pass through Python (building a model per recipient was most of
    a chunk's time, docs/performance.md). A row there already (a redelivered chunk) stays."""
    recipients = (campaign_audience(kind=campaign.kind)
                  .filter(id__range=(first_user_id, last_user_id)).values_list("id", "email"))
    if connection.vendor != "postgresql":  # SQLite, `make dev`'s default: through the ORM
        Notification.objects.bulk_create(
            [Notification(kind=campaign.kind, recipient=email, user_id=user_id,
                          campaign=campaign, subject=campaign.subject, body=campaign.body,
                          idempotency_key=f"campaign:{campaign.pk}:user:{user_id}")
             for user_id, email in recipients], ignore_conflicts=True)
        return
    audience, params = recipients.query.sql_with_params()
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        _audience_lock(shared=True)  # an opt-out in flight commits first
        cursor.execute(
            f"INSERT INTO {Notification._meta.db_table} "  # noqa: S608  # the model's own SQL
            "(kind, channel, recipient, user_id, campaign_id, subject, body, idempotency_key, "
            "status, attempts, provider_message_id, last_error, created_at, updated_at) "
            "SELECT %s, 'email', audience.email, audience.id, %s, %s, %s, "
            "%s || audience.id, %s, 0, '', '', %s, %s "
            f"FROM ({audience}) AS audience(id, email) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            [campaign.kind, campaign.pk, campaign.subject, campaign.body,
             f"campaign:{campaign.pk}:user:", Notification.Status.PENDING, now, now, *params])


def _chunk_finish(*, campaign_id: int, first_user_id: int, last_user_id: int) -> None:
    """Mark the chunk done, then the campaign if no chunk of it is left.

    Rows still pending (a duplicate of this task holds them locked) leave the chunk to that
    duplicate. The two UPDATEs run outside any transaction, each committed on its own: of
    chunks finishing at once on several workers, the one whose mark commits last runs its
    check after every other mark is committed, so someone always sees "none left". The
    statements are written once, not built by the ORM for each chunk, which cost several
    times their running (docs/performance.md).
    """
    with connection.cursor() as cursor:
        cursor.execute(_pending_statement(), [campaign_id, Notification.Status.PENDING,
                                              first_user_id, last_user_id])
        if cursor.fetchone() is not None:
            return
        cursor.execute(_chunk_done_statement(), [CampaignChunk.Status.DONE, campaign_id,
                                                 first_user_id])
    _campaign_finish_if_done(campaign_id=campaign_id)


def _campaign_finish_if_done(*, campaign_id: int) -> bool:
    """SENDING -> DONE in one conditional UPDATE, when no chunk is unfinished: of two
    chunks that both see none left, the second waits for the first's row lock, then finds
    the campaign no longer SENDING and changes nothing. Rows left pending by users deleted
    mid-campaign (their user is NULL, outside every chunk's range) are failed then: never
    sent, and no longer waiting."""
    with connection.cursor() as cursor:
        cursor.execute(_campaign_done_statement(), [
            Campaign.Status.DONE, campaign_id, Campaign.Status.SENDING, campaign_id,
            CampaignChunk.Status.DONE])
        if not cursor.rowcount:
            return False
    Notification.objects.filter(campaign_id=campaign_id, status=Notification.Status.PENDING,
                                user__isnull=True).update(
        status=Notification.Status.FAILED, last_error="the user was deleted before sending",
        updated_at=timezone.now())
    return True


@cache
def _pending_statement() -> str:
    notifications = connection.ops.quote_name(Notification._meta.db_table)
    return (f"SELECT 1 FROM {notifications} WHERE campaign_id = %s "  # noqa: S608
            "AND status = %s AND user_id >= %s AND user_id <= %s LIMIT 1")


@cache
def _chunk_done_statement() -> str:
    chunks = connection.ops.quote_name(CampaignChunk._meta.db_table)
    return (f"UPDATE {chunks} SET status = %s "  # noqa: S608  # the model's own table
            "WHERE campaign_id = %s AND first_user_id = %s")


@cache
def _campaign_done_statement() -> str:
    campaigns, chunks = (connection.ops.quote_name(model._meta.db_table)
                         for model in (Campaign, CampaignChunk))
    return (f"UPDATE {campaigns} SET status = %s "  # noqa: S608  # the models' own tables
            "WHERE id = %s AND status = %s AND NOT EXISTS ("
            f"SELECT 1 FROM {chunks} WHERE campaign_id = %s AND status <> %s)")


def _deliver(provider: EmailProvider, notification: Notification) -> None:
    notification.attempts += 1
    notification.provider_message_id = provider.send(OutgoingEmail(
        to=notification.recipient, subject=notification.subject, body=notification.body,
        message_id=message_id_for(notification.pk)))
    notification.status = Notification.Status.SENT
    notification.sent_at = notification.updated_at = timezone.now()
    notification.last_error = ""


def _record_failure(notification: Notification, error: _Error) -> _Error:
    notification.last_error = _storable(str(error)[:2000])
    notification.updated_at = timezone.now()
    if isinstance(error, PermanentError):
        notification.status = Notification.Status.FAILED
    return error


class _Pending(NamedTuple):
    """What a batch reads of a pending row."""

    pk: int
    recipient: str
    subject: str
    body: str
    user_id: int


def _deliver_batch(provider: EmailProvider,
                   batch: list[_Pending]) -> tuple[int, list[str], TransientError | None]:
    """Send a batch, one provider call per distinct message (a campaign's batch is one):
    a refused address fails alone, a deferred one stays pending with its reason, a provider
    outage stops the batch. Return how many were sent, why each deferred one was, and the
    outage. The outcomes are written with a statement for the sent and one for the
    refused, whatever the size (deferrals are rare: a statement each)."""
    by_message: dict[tuple[str, str], list[_Pending]] = {}
    for notification in batch:
        by_message.setdefault((notification.subject, notification.body), []).append(
            notification)
    sent, refused, deferred, error = [], [], [], None
    for (subject, body), notifications in by_message.items():
        result = provider.send_batch(subject=subject, body=body, recipients=[
            BatchRecipient(to=n.recipient, message_id=message_id_for(n.pk),
                           variables={"email": n.recipient}) for n in notifications])
        for notification, outcome in zip(notifications, result.outcomes, strict=False):
            if outcome.rejected:
                refused.append((notification.pk, outcome.rejected))
            elif outcome.deferred:
                deferred.append((notification.pk, outcome.deferred))
            else:
                sent.append((notification.pk, outcome.message_id))
        if result.error is not None:
            error = result.error
            left = notifications[len(result.outcomes):]
            Notification.objects.filter(pk__in=[n.pk for n in left]).update(
                last_error=_storable(str(error)[:2000]), updated_at=timezone.now())
            break
    _write_outcomes(sent=sent, refused=refused)
    now = timezone.now()
    for pk, reason in deferred:
        Notification.objects.filter(pk=pk).update(
            last_error=_storable(reason[:2000]), attempts=F("attempts") + 1, updated_at=now)
    return len(sent), [reason for _, reason in deferred], error


def _write_outcomes(*, sent: list[tuple[int, str]], refused: list[tuple[int, str]]) -> None:
    """SENT with each provider id, FAILED with each reason: one UPDATE from arrays each
    (the ORM's bulk_update writes a CASE per row and field, docs/performance.md). The
    provider has taken the batch by now: whatever it answered is stored (cut to its
    column, `_storable`), since an error here would roll the outcomes back and send the
    batch again."""
    now = timezone.now()
    if connection.vendor != "postgresql":  # SQLite, `make dev`'s default: a row at a time
        for pk, message_id in sent:
            Notification.objects.filter(pk=pk).update(
                status=Notification.Status.SENT, sent_at=now, last_error="",
                provider_message_id=_storable(message_id[:255]), attempts=F("attempts") + 1,
                updated_at=now)
        for pk, reason in refused:
            Notification.objects.filter(pk=pk).update(
                status=Notification.Status.FAILED, last_error=_storable(reason[:2000]),
                attempts=F("attempts") + 1, updated_at=now)
        return
    table = Notification._meta.db_table
    for rows, assignments, values in (
            (sent, "status = %s, sent_at = %s, last_error = '', "
                   "provider_message_id = left(outcome.value, 255)",
             [Notification.Status.SENT, now]),
            (refused, "status = %s, last_error = left(outcome.value, 2000)",
             [Notification.Status.FAILED])):
        if not rows:
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {assignments}, attempts = attempts + 1, "  # noqa: S608
                "updated_at = %s FROM unnest(%s::bigint[], %s::text[]) AS outcome(id, value) "
                f"WHERE {table}.id = outcome.id",
                [*values, now, _array_literal(str(pk) for pk, _ in rows),
                 _array_literal(_quoted(value) for _, value in rows)])


def _array_literal(elements: Iterable[str]) -> str:
    """An array's text form, passed as one string where psycopg would adapt a list
    element by element in Python (docs/performance.md)."""
    return _storable("{" + ",".join(elements) + "}")


def _quoted(text: str) -> str:
    """`text` as an element of an array's text form, whatever it holds."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _storable(text: str) -> str:
    """`text` as a text column takes it: a NUL or a lone surrogate, which PostgreSQL
    refuses, replaced by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
    return text


def digest_start_for_day(*, day: date) -> Campaign:
    """Create and start the digest of `day`; beat firing twice still sends one digest."""
    campaign = campaign_create(
        kind=Kind.DIGEST, key=f"digest:{day.isoformat()}",
        subject=f"Your daily digest for {day:%B} {day.day}",
        body=(f"Here is what happened in your account on {day:%A, %B} {day.day}.\n\n"
              "Change how often we write to you in your notification settings."))
    return campaign_start(campaign_id=campaign.pk)
