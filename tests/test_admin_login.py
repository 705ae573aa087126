"""The admin's login is throttled and a staff session is short.

Through gunicorn with two workers and production settings (a failure counted by one
worker locks the login on the other), and at the failure limit's boundary through
Django's test client.
"""

import re
from datetime import timedelta

import pytest
import requests
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.fixtures import HANG
from tests.production import csrf_token

USERNAME = "operator"
PASSWORD = "the-right-password"
LOCKED = "too many login attempts"


@pytest.fixture
def operator(django_user_model) -> User:
    return django_user_model.objects.create_user(USERNAME, password=PASSWORD, is_staff=True)


def post_login(session: requests.Session, base_url: str, password: str) -> requests.Response:
    """One login form post, as a browser sends it (its CSRF token from the form)."""
    page = session.get(f"{base_url}/admin/login/", timeout=HANG)
    return session.post(f"{base_url}/admin/login/", timeout=HANG, allow_redirects=False, data={
        "username": USERNAME, "password": password, "next": "/admin/",
        "csrfmiddlewaretoken": csrf_token(session, page.text)})


def logged_in(response: requests.Response) -> bool:
    return response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_wrong_passwords_lock_the_login_until_the_lock_ends(gunicorn_server, operator):
    session = requests.Session()
    responses = [post_login(session, gunicorn_server, "wrong-password")
                 for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert [r.status_code for r in responses[:-1]] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert responses[-1].status_code == 429, responses[-1].text

    refused = post_login(session, gunicorn_server, PASSWORD)
    assert refused.status_code == 429
    assert LOCKED in refused.text
    assert "sessionid" not in refused.cookies

    # The lock ends LOGIN_LOCKOUT_MINUTES after the last failure: move the failures back.
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert logged_in(post_login(session, gunicorn_server, PASSWORD))


def test_a_staff_session_lasts_the_staff_session_age(gunicorn_server, operator):
    assert settings.STAFF_SESSION_AGE < settings.SESSION_COOKIE_AGE
    response = post_login(requests.Session(), gunicorn_server, PASSWORD)
    assert logged_in(response)
    (cookie,) = [c for c in response.raw.headers.getlist("Set-Cookie")
                 if c.startswith("sessionid=")]
    assert re.search(rf"; Max-Age={settings.STAFF_SESSION_AGE}(;|$)", cookie), cookie
    # The stored session ends then too, so a copied cookie dies with it.
    (stored,) = Session.objects.all()
    assert stored.expire_date <= timezone.now() + timedelta(seconds=settings.STAFF_SESSION_AGE)


@pytest.mark.django_db
@hypothesis_settings(max_examples=12, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(failures=st.integers(min_value=0, max_value=2 * settings.AXES_FAILURE_LIMIT))
@example(failures=settings.AXES_FAILURE_LIMIT - 1)
@example(failures=settings.AXES_FAILURE_LIMIT)
def test_the_right_password_works_until_the_failure_limit(operator, failures):
    AccessAttempt.objects.all().delete()  # each example starts unlocked
    client = Client()
    for _ in range(failures):
        client.post("/admin/login/", {"username": USERNAME, "password": "wrong-password"})
    response = client.post("/admin/login/", {"username": USERNAME, "password": PASSWORD,
                                              "next": "/admin/"})
    if failures < settings.AXES_FAILURE_LIMIT:
        assert response.status_code == 302, failures
    else:
        assert response.status_code == 429, failures
        assert LOCKED in response.content.decode()
