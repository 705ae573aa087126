"""The campaign admin refuses a campaign that could never be sent, or sent as written, and
freezes one that started; a preference saved there holds for campaigns already sending; a
transactional message's body (a password-reset link) is shown to no account."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from apps.notifications.models import Campaign, Kind, Notification, NotificationPreference
from apps.notifications.services import campaign_create


@pytest.mark.django_db
def test_a_campaign_of_chunks_of_zero_is_refused(admin_client):
    page = admin_client.post(reverse("admin:notifications_campaign_add"), {
        "kind": Kind.NEWSLETTER, "key": "zero", "subject": "s", "body": "b",
        "chunk_size": "0"})
    assert page.status_code == 200
    assert "greater than or equal to 1" in page.content.decode()
    assert not Campaign.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("subject", ["Line1\r\nBcc: x@evil.com", "a\nb", "a\rb"])
def test_a_subject_with_a_line_break_is_refused(admin_client, subject):
    page = admin_client.post(reverse("admin:notifications_campaign_add"), {
        "kind": Kind.NEWSLETTER, "key": "crlf", "subject": subject, "body": "b",
        "chunk_size": "10"})
    assert page.status_code == 200
    assert "cannot contain a line break" in page.content.decode()
    assert not Campaign.objects.exists()
    with pytest.raises(ValidationError):
        campaign_create(kind=Kind.NEWSLETTER, key="crlf", subject=subject, body="b")
    assert not Campaign.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Campaign.Status.SENDING, Campaign.Status.DONE])
def test_a_campaign_that_started_cannot_be_edited(admin_client, status):
    """Its chunks still to run would send another text, or to another kind's audience."""
    campaign = Campaign.objects.create(kind=Kind.NEWSLETTER, key="started", subject="News",
                                       body="What is new", chunk_size=10, status=status)
    url = reverse("admin:notifications_campaign_change", args=[campaign.pk])
    assert admin_client.get(url).status_code == 200
    page = admin_client.post(url, {"kind": Kind.DIGEST, "key": "other", "subject": "Changed",
                                   "body": "Changed", "chunk_size": "1"})
    assert page.status_code in (200, 302)
    campaign.refresh_from_db()
    assert (campaign.kind, campaign.key, campaign.subject, campaign.body,
            campaign.chunk_size) == (Kind.NEWSLETTER, "started", "News", "What is new", 10)
    draft = Campaign.objects.create(kind=Kind.NEWSLETTER, key="draft", subject="News",
                                    body="What is new", chunk_size=10)
    admin_client.post(reverse("admin:notifications_campaign_change", args=[draft.pk]), {
        "kind": Kind.NEWSLETTER, "key": "draft", "subject": "Edited", "body": "What is new",
        "chunk_size": "10"})
    draft.refresh_from_db()
    assert draft.subject == "Edited"  # a draft stays editable


@pytest.mark.django_db
def test_an_opt_out_saved_in_the_admin_holds_for_a_campaign_already_sending(admin_client):
    """The admin saves a preference through the service: the user's pending row of a
    sending newsletter is failed, and the preference's user cannot be changed."""
    user = get_user_model().objects.create(username="reader", email="reader@example.com")
    campaign = campaign_create(kind=Kind.NEWSLETTER, key="admin-opt-out", subject="News",
                               body="Hello")
    pending = Notification.objects.create(
        kind=Kind.NEWSLETTER, recipient=user.email, user=user, campaign=campaign,
        subject="News", body="Hello", idempotency_key=f"campaign:{campaign.pk}:user:{user.pk}")

    page = admin_client.post(reverse("admin:notifications_notificationpreference_add"), {
        "user": user.pk, "digest_opt_out": "on"})
    assert page.status_code == 302
    pending.refresh_from_db()
    assert pending.status == Notification.Status.PENDING  # digests only: still to be sent

    preference = NotificationPreference.objects.get(user=user)
    other = get_user_model().objects.create(username="other", email="other@example.com")
    url = reverse("admin:notifications_notificationpreference_change", args=[preference.pk])
    page = admin_client.post(url, {"user": other.pk, "newsletter_opt_out": "on"})
    assert page.status_code == 302
    pending.refresh_from_db()
    assert (pending.status, pending.last_error) == (Notification.Status.FAILED,
                                                    "the user opted out before it was sent")
    assert list(NotificationPreference.objects.values_list(
        "user", "digest_opt_out", "newsletter_opt_out")) == [(user.pk, False, True)]


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.one_of(st.text(max_size=24), st.integers().map(str), st.just("{user}")),
       digest=st.one_of(st.none(), st.text(max_size=4)), newsletter=st.sampled_from(
           [None, "on", "", "\x00", "true", "0"]))
@example(user="{user}", digest=None, newsletter="on")  # a real one: saved, opted out
def test_any_preference_posted_to_the_admin_is_saved_or_refused_with_nothing_stored(
        admin_client, user, digest, newsletter):
    """Whatever the add form is sent: no 5xx, a refusal stores nothing, and a save stores
    one preference."""
    reader, _ = get_user_model().objects.get_or_create(username="hostile-reader",
                                                       email="reader@example.com")
    NotificationPreference.objects.filter(user=reader).delete()
    before = NotificationPreference.objects.count()
    data = {"user": user.replace("{user}", str(reader.pk))}
    data.update({name: value for name, value in (("digest_opt_out", digest),
                                                 ("newsletter_opt_out", newsletter))
                 if value is not None})

    page = admin_client.post(reverse("admin:notifications_notificationpreference_add"), data)

    assert page.status_code in (200, 302, 400)
    if (user, digest, newsletter) == ("{user}", None, "on"):
        assert page.status_code == 302
    if page.status_code == 302:
        assert NotificationPreference.objects.count() == before + 1
    else:
        assert NotificationPreference.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [Kind.PASSWORD_RESET, Kind.WELCOME])
def test_a_transactional_body_is_shown_neither_to_a_viewer_nor_to_a_superuser(
        admin_client, client, kind):
    link = "https://app.example.com/reset/Nw/cbx-RESETTOKEN77/"
    message = Notification.objects.create(kind=kind, recipient="a@example.com",
                                          subject="Reset your password", body=f"Reset: {link}",
                                          idempotency_key=f"reset:{kind}")
    newsletter = Notification.objects.create(kind=Kind.NEWSLETTER, recipient="a@example.com",
                                             subject="News", body="This week's news",
                                             idempotency_key="news:1")
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(viewer)
    for browser in (client, admin_client):
        page = browser.get(reverse("admin:notifications_notification_change",
                                   args=[message.pk]))
        assert page.status_code == 200
        assert "RESETTOKEN77" not in page.content.decode()
        assert "[hidden: " in page.content.decode()
        shown = browser.get(reverse("admin:notifications_notification_change",
                                    args=[newsletter.pk]))
        assert "This week&#x27;s news" in shown.content.decode()
