"""Staff sessions end hours after login, not Django's two weeks later.

A staff session can requeue, discard and read the payloads of failed jobs: a session
cookie lifted from an operator's browser should not be worth a fortnight. When a staff user
logs in, the session's expiry becomes STAFF_SESSION_AGE seconds: the cookie's max-age and
the stored session's expiry alike, so a copied cookie dies with it. Other users keep
SESSION_COOKIE_AGE.
"""

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.http import HttpRequest


def shorten_staff_session(sender: object, request: HttpRequest | None, user: object,
                          **kwargs: object) -> None:
    if request is not None and getattr(user, "is_staff", False):
        request.session.set_expiry(settings.STAFF_SESSION_AGE)


def connect() -> None:
    user_logged_in.connect(shorten_staff_session, dispatch_uid="workers.ops.staff_sessions")
