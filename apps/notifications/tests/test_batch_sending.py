"""Campaigns through a provider's batch API: one call per batch with a variable per
recipient, a refused address failing alone with its reason, an outage leaving the whole
batch to the retry, the outcomes written set-wise; and the per-message fallback for a
backend without batches (Django's own)."""

import smtplib
import time
from collections.abc import Sequence
from functools import partial

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail.backends import locmem
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.notifications.mail_backends import InMemoryBatchBackend
from apps.notifications.models import (
    Campaign,
    CampaignChunk,
    Kind,
    Notification,
    NotificationPreference,
)
from apps.notifications.providers import (
    BatchRecipient,
    ProviderRateLimited,
    ProviderUnavailable,
    RecipientDeferred,
    RecipientOutcome,
    message_id_for,
)
from apps.notifications.services import (
    AUDIENCE_LOCK,
    _create_chunk_notifications,
    campaign_create,
    campaign_send_chunk,
    notification_preference_set,
)

BATCH_BACKEND = "apps.notifications.mail_backends.InMemoryBatchBackend"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def unlimited(settings, test_redis):
    """The shared rate limit out of the way: batches as large as asked for."""
    settings.NOTIFICATIONS_RATE_PER_SECOND = 1_000_000


def campaign_to(emails: Sequence[str], body: str = "Hello $email, what is new") -> tuple:
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"b{time.time_ns()}-{i}", email=email)
        for i, email in enumerate(emails))
    campaign = campaign_create(kind=Kind.NEWSLETTER, key=f"batch-{time.time_ns()}",
                               subject="News for $email", body=body)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    return campaign, users


def send(campaign: Campaign, users: list) -> int:
    return campaign_send_chunk(campaign_id=campaign.pk, first_user_id=users[0].pk,
                               last_user_id=users[-1].pk)


def test_a_batch_is_one_call_with_a_variable_and_a_result_per_recipient(settings):
    settings.EMAIL_BACKEND = BATCH_BACKEND
    settings.NOTIFICATIONS_SEND_BATCH = 50
    mail.batches = []
    campaign, users = campaign_to([f"reader{i}@example.com" for i in range(120)]
                                  + ["not-an-address"])

    assert send(campaign, users) == 120

    assert [len(batch.recipients) for batch in mail.batches] == [50, 50, 20]
    assert mail.outbox == []  # no message built per recipient
    first = mail.batches[0]
    assert (first.subject, first.body) == ("News for $email", "Hello $email, what is new")
    notifications = Notification.objects.filter(campaign=campaign).order_by("pk")
    assert first.recipients[0] == BatchRecipient(
        to="reader0@example.com", message_id=message_id_for(notifications[0].pk),
        variables={"email": "reader0@example.com"})
    sent = notifications.filter(status=Notification.Status.SENT)
    assert sent.count() == 120
    assert {n.provider_message_id for n in sent} == {message_id_for(n.pk) for n in sent}
    assert all(n.attempts == 1 and n.sent_at for n in sent)
    refused = notifications.get(recipient="not-an-address")
    assert (refused.status, refused.attempts) == (Notification.Status.FAILED, 1)
    assert "invalid address" in refused.last_error
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DONE


def test_the_writes_of_a_batch_do_not_grow_with_its_size(settings):
    settings.EMAIL_BACKEND = BATCH_BACKEND
    counts = []
    for size in (10, 200):
        settings.NOTIFICATIONS_SEND_BATCH = size
        campaign, users = campaign_to([f"r{size}-{i}@example.com" for i in range(size)])
        with CaptureQueriesContext(connection) as queries:
            send(campaign, users)
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]


class DownBackend(InMemoryBatchBackend):
    def send_batch(self, **_: object) -> list:
        raise smtplib.SMTPServerDisconnected("the provider went away")


def test_an_outage_leaves_the_whole_batch_pending_for_the_retry(settings):
    settings.EMAIL_BACKEND = f"{__name__}.DownBackend"
    campaign, users = campaign_to([f"down{i}@example.com" for i in range(3)])

    with pytest.raises(ProviderUnavailable):
        send(campaign, users)

    notifications = Notification.objects.filter(campaign=campaign)
    assert {n.status for n in notifications} == {Notification.Status.PENDING}
    assert all("went away" in n.last_error for n in notifications)
    settings.EMAIL_BACKEND = BATCH_BACKEND
    assert send(campaign, users) == 3  # the retry sends them all, once


class AnsweringBackend(InMemoryBatchBackend):
    """A provider answering with whatever `answers` holds: (message id, rejection)."""
    answers: list[tuple[str, str]] = []

    def send_batch(self, **_: object) -> list:
        return [RecipientOutcome(message_id=message_id, rejected=rejected)
                for message_id, rejected in self.answers]


def stored(text: str, limit: int) -> str:
    """What a text column keeps of a provider's answer: cut, NUL and lone surrogates
    replaced."""
    return "".join("\ufffd" if char == "\x00" or "\ud800" <= char <= "\udfff" else char
                   for char in text[:limit])


any_text = st.text(st.characters(codec=None, categories=None), max_size=2100) | st.sampled_from(
    ['"', "\\", "{}", "a,b", '"\\"', "\x00", "\ud800", "NULL", "x" * 2100])


@hypothesis_settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(st.tuples(any_text, st.just("")) | st.tuples(
    st.just(""), any_text.filter(bool)), min_size=1, max_size=4))
def test_whatever_the_provider_answers_is_stored_and_nothing_is_sent_again(settings,
                                                                          answers):
    """Once the provider has taken a batch, its answer (a message id or a reason, with
    quotes, NULs, lone surrogates, any length) is written: an error there would roll the
    outcomes back and send the batch again."""
    settings.EMAIL_BACKEND = f"{__name__}.AnsweringBackend"
    AnsweringBackend.answers = answers
    campaign, users = campaign_to([f"answer{i}@example.com" for i in range(len(answers))])

    assert send(campaign, users) == sum(1 for _, rejected in answers if not rejected)

    rows = Notification.objects.filter(campaign=campaign).order_by("pk")
    assert [(n.status, n.provider_message_id, n.last_error) for n in rows] == [
        ("failed", "", stored(rejected, 2000)) if rejected else
        ("sent", stored(message_id, 255), "") for message_id, rejected in answers]
    assert send(campaign, users) == 0  # a redelivered chunk finds every outcome written


class RefusingSmtpBackend(locmem.EmailBackend):
    """Django's SMTP errors from a backend without batches: a RCPT reply for the addresses
    in `replies`, or the sender refused."""
    replies: dict[str, tuple[int, bytes]] = {}
    sender_refused = False

    def send_messages(self, messages):  # type: ignore[no-untyped-def]
        if self.sender_refused:
            raise smtplib.SMTPSenderRefused(553, b"5.7.1 Sender address rejected",
                                            "no-reply@example.com")
        for message in messages:
            if message.to[0] in self.replies:
                raise smtplib.SMTPRecipientsRefused({message.to[0]:
                                                     self.replies[message.to[0]]})
        return super().send_messages(messages)


@pytest.fixture
def refusing(settings, mailoutbox):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingSmtpBackend"
    RefusingSmtpBackend.replies, RefusingSmtpBackend.sender_refused = {}, False
    return RefusingSmtpBackend


def test_a_mailbox_asking_to_wait_waits_alone_for_the_chunks_retry(refusing, mailoutbox):
    """A full mailbox (452) does not hold its neighbours back: they are sent, it stays
    pending with the reason, and the chunk's retry sends it once it is accepted."""
    refusing.replies = {"full@example.com": (452, b"4.2.2 Mailbox full")}
    campaign, users = campaign_to(["ann@example.com", "full@example.com", "bob@example.com"])

    with pytest.raises(RecipientDeferred, match="Mailbox full"):
        send(campaign, users)

    assert sorted(m.to[0] for m in mailoutbox) == ["ann@example.com", "bob@example.com"]
    full = Notification.objects.get(campaign=campaign, recipient="full@example.com")
    assert (full.status, full.attempts) == (Notification.Status.PENDING, 1)
    assert "452 4.2.2 Mailbox full" in full.last_error
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENDING
    refusing.replies = {}
    assert send(campaign, users) == 1  # the retry: the deferred one alone
    assert sorted(m.to[0] for m in mailoutbox) == [
        "ann@example.com", "bob@example.com", "full@example.com"]
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DONE


def test_a_server_refusing_every_message_stops_the_batch_for_the_retry(refusing, mailoutbox):
    """421 (the server itself) and a refused sender are the setup, not the recipients:
    nothing fails for good, everyone waits for the retry."""
    refusing.replies = {"first@example.com": (421, b"4.7.0 try again later")}
    campaign, users = campaign_to(["first@example.com", "second@example.com"])
    with pytest.raises(ProviderRateLimited) as raised:
        send(campaign, users)
    assert not isinstance(raised.value, RecipientDeferred)

    refusing.replies, refusing.sender_refused = {}, True
    with pytest.raises(ProviderUnavailable, match="sender refused: 553"):
        send(campaign, users)

    assert mailoutbox == []
    assert set(Notification.objects.filter(campaign=campaign).values_list(
        "status", flat=True)) == {Notification.Status.PENDING}


def test_a_backend_without_batches_gets_a_message_per_recipient(mailoutbox):
    campaign, users = campaign_to(["ann@example.com", "bob@example.com"])

    assert send(campaign, users) == 2

    assert sorted((m.to[0], m.subject, m.body) for m in mailoutbox) == [
        ("ann@example.com", "News for ann@example.com", "Hello ann@example.com, what is new"),
        ("bob@example.com", "News for bob@example.com", "Hello bob@example.com, what is new")]
    assert set(Notification.objects.filter(campaign=campaign).values_list(
        "status", flat=True)) == {Notification.Status.SENT}


def test_an_address_smtp_cannot_parse_fails_alone_and_nothing_is_sent_twice(settings,
                                                                            smtp_server):
    """Over SMTP (no batches), an address Django cannot parse and a subject it cannot
    send fail for good, their neighbours are sent once, and a repeat of the chunk (a
    redelivery) sends nothing more."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    good = [f"good{i}-{time.time_ns()}@example.com" for i in range(3)]
    hostile = ["a@b.com,evil", "victim@example.com>, <attacker@evil.com"]
    campaign, users = campaign_to([good[0], *hostile, good[1], good[2]])

    assert send(campaign, users) == 3
    assert send(campaign, users) == 0

    assert sorted(item.to for item in smtp_server.delivered if item.to in good) == sorted(good)
    notifications = Notification.objects.filter(campaign=campaign)
    refused = notifications.filter(status=Notification.Status.FAILED)
    assert sorted(refused.values_list("recipient", flat=True)) == sorted(hostile)
    assert all("nvalid address" in n.last_error for n in refused)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DONE
    assert not any(item.to.endswith("evil.com") for item in smtp_server.delivered)


@pytest.mark.parametrize("to", ["a@b.com,evil", "victim@example.com>, <attacker@evil.com",
                                "a\u202eb@example.com", f"{'x' * 65}@example.com",
                                "a@b", "a@-b.com", "bel\x07@example.com"])
def test_the_batch_backends_refuse_what_is_not_one_address(settings, to):
    settings.EMAIL_BACKEND = BATCH_BACKEND
    campaign, users = campaign_to([to, "fine@example.com"])

    assert send(campaign, users) == 1

    assert Notification.objects.get(campaign=campaign, recipient=to).status == "failed"


@pytest.mark.django_db(transaction=True)
def test_rows_a_duplicate_of_the_chunk_holds_are_skipped_and_left_to_it(settings):
    """A redelivered chunk runs beside the first: each batch locks its rows and skips the
    rows the other holds, so no recipient gets the message twice, and the chunk is left
    unfinished while any is still pending."""
    from django.db import connections

    settings.EMAIL_BACKEND = BATCH_BACKEND
    settings.NOTIFICATIONS_SEND_BATCH = 4
    mail.batches = []
    campaign, users = campaign_to([f"dup{i}@example.com" for i in range(10)])
    _create_chunk_notifications(campaign=campaign, first_user_id=users[0].pk,
                                last_user_id=users[-1].pk)  # as the duplicate did
    held = list(Notification.objects.filter(campaign=campaign, status="pending")
                .order_by("id").values_list("id", flat=True)[:3])
    duplicate = connections["default"].copy("duplicate")
    try:
        duplicate.set_autocommit(False)
        with duplicate.cursor() as cursor:  # the duplicate's batch, mid-send
            cursor.execute("SELECT id FROM notifications_notification WHERE id = ANY(%s) "
                           "FOR UPDATE", [held])
        with connection.cursor() as cursor:  # a batch that waited for them fails, not hangs
            cursor.execute("SET lock_timeout = '10s'")
        sent = send(campaign, users)
    finally:
        duplicate.rollback()
        duplicate.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert sent == 7  # 10, less the 3 held
    sent_to = [r.to for batch in mail.batches for r in batch.recipients]
    assert len(sent_to) == len(set(sent_to)) == 7
    assert set(Notification.objects.filter(status="pending").values_list("id", flat=True)) \
        == set(held)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENDING


def test_a_user_deleted_mid_campaign_is_not_sent_and_leaves_no_row_pending(settings):
    settings.EMAIL_BACKEND = BATCH_BACKEND
    mail.batches = []
    campaign, users = campaign_to(["stay@example.com", "gone@example.com"])
    _create_chunk_notifications(campaign=campaign, first_user_id=users[0].pk,
                                last_user_id=users[-1].pk)  # the chunk began
    first, last = users[0].pk, users[-1].pk
    users[1].delete()  # its row keeps the message, without the user

    assert campaign_send_chunk(campaign_id=campaign.pk, first_user_id=first,
                               last_user_id=last) == 1

    assert [r.to for batch in mail.batches for r in batch.recipients] == ["stay@example.com"]
    gone = Notification.objects.get(campaign=campaign, recipient="gone@example.com")
    assert (gone.status, gone.last_error) == (Notification.Status.FAILED,
                                              "the user was deleted before sending")
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DONE


def test_a_user_who_opts_out_mid_campaign_is_not_sent_to(settings):
    """The chunk wrote their row from the audience when it began; the opt-out fails it.
    An opt-out of another kind, or a choice that opts out of nothing, changes nothing."""
    settings.EMAIL_BACKEND = BATCH_BACKEND
    mail.batches = []
    campaign, users = campaign_to(["stay@example.com", "out@example.com",
                                   "no-digests@example.com", "undecided@example.com"])
    _create_chunk_notifications(campaign=campaign, first_user_id=users[0].pk,
                                last_user_id=users[-1].pk)  # the chunk began
    notification_preference_set(user_id=users[1].pk, digest_opt_out=False,
                                newsletter_opt_out=True)
    notification_preference_set(user_id=users[2].pk, digest_opt_out=True,
                                newsletter_opt_out=False)
    notification_preference_set(user_id=users[3].pk, digest_opt_out=False,
                                newsletter_opt_out=False)

    assert send(campaign, users) == 3

    assert sorted(r.to for batch in mail.batches for r in batch.recipients) == [
        "no-digests@example.com", "stay@example.com", "undecided@example.com"]
    out = Notification.objects.get(campaign=campaign, recipient="out@example.com")
    assert (out.status, out.last_error, out.attempts) == (
        Notification.Status.FAILED, "the user opted out before it was sent", 0)
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DONE


@pytest.mark.parametrize("to", ["Eve <eve@evil.com>", "a%s%(x)s@example.com",
                                "esc\x1b[31m@example.com", "cr\r\nBcc: v@evil.com",
                                "a\u202eb@example.com"])
def test_smtp_refuses_what_the_batch_backends_refuse(refusing, mailoutbox, to):
    """Without batches a message each goes through Django, which would take a display
    name's address or rewrite what it cannot parse: refused alike, for that recipient."""
    campaign, users = campaign_to([to, "fine@example.com"])

    assert send(campaign, users) == 1

    assert [m.to for m in mailoutbox] == [["fine@example.com"]]
    refused = Notification.objects.get(campaign=campaign, recipient=to)
    assert (refused.status, refused.last_error) == ("failed", f"invalid address: {to!r}")


@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_skipped_a_row_an_opt_out_held_is_finished_once_it_commits(settings):
    """The chunk's claim skips a row the opt-out's transaction holds, and its last check
    still sees it pending: after that commit the opt-out finishes the chunk and the
    campaign, which nothing else would."""
    from django.db import connections

    settings.EMAIL_BACKEND = BATCH_BACKEND
    mail.batches = []
    campaign, users = campaign_to(["stay@example.com", "out@example.com"])
    CampaignChunk.objects.create(campaign=campaign, first_user_id=users[0].pk,
                                 last_user_id=users[-1].pk)
    _create_chunk_notifications(campaign=campaign, first_user_id=users[0].pk,
                                last_user_id=users[-1].pk)
    held = Notification.objects.get(campaign=campaign, recipient="out@example.com").pk
    opt_out = connections["default"].copy("opt-out")
    try:
        opt_out.set_autocommit(False)
        with opt_out.cursor() as cursor:  # the opt-out's transaction, not yet committed
            cursor.execute("SELECT id FROM notifications_notification WHERE id = %s "
                           "FOR UPDATE", [held])
        assert send(campaign, users) == 1
        assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.SENDING
    finally:
        opt_out.rollback()
        opt_out.close()

    notification_preference_set(user_id=users[1].pk, digest_opt_out=False,
                                newsletter_opt_out=True)

    assert CampaignChunk.objects.get(campaign=campaign).status == CampaignChunk.Status.DONE
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DONE
    assert [r.to for batch in mail.batches for r in batch.recipients] == ["stay@example.com"]


@pytest.mark.parametrize("held", ["exclusive", "shared"])
def test_a_chunk_reading_its_audience_and_an_opt_out_wait_for_each_other(settings, held):
    """A chunk does not read the audience while an opt-out is uncommitted (it would not
    see it), and an opt-out does not fail rows while a chunk's are uncommitted (it would
    not see them): each waits, here until the lock timeout, with nothing written."""
    from django.db import OperationalError, connections, transaction

    campaign, users = campaign_to(["reader@example.com"])
    other = connections["default"].copy("other")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock"
                           f"{'_shared' if held == 'shared' else ''}(%s)", [AUDIENCE_LOCK])
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '100ms'")
            waiting = (  # an opt-out in flight: the chunk waits; a chunk: the opt-out
                partial(_create_chunk_notifications, campaign=campaign,
                        first_user_id=users[0].pk, last_user_id=users[0].pk)
                if held == "exclusive" else
                partial(notification_preference_set, user_id=users[0].pk,
                        digest_opt_out=False, newsletter_opt_out=True))
            with pytest.raises(OperationalError, match="lock timeout"), transaction.atomic():
                waiting()
        assert not Notification.objects.filter(campaign=campaign).exists()
        assert not NotificationPreference.objects.filter(user=users[0]).exists()
    finally:
        other.rollback()
        other.close()
