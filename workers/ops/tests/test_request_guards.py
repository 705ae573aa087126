"""Form and query input holding NUL is refused with a 400 on every page, and nothing is
stored (the paths a hostile walk of the admin found answering 500)."""

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.factories import DeadLetterFactory
from workers.dead_letters.models import DeadLetter, DeadLetterEvent, Redrive

GROUPS = "admin:workers_deadletter_groups"


@pytest.mark.django_db
def test_the_paths_that_answered_500_answer_400_and_store_nothing(admin_client):
    row = DeadLetterFactory()
    edit = reverse("admin:workers_deadletter_edit", args=[row.pk])
    change = reverse("admin:workers_deadletter_change", args=[row.pk])
    for method, url, data in (
            ("get", reverse(GROUPS), {"q": "\x00"}),
            ("get", reverse("admin:workers_deadletter_changelist"), {"q": "a\x00"}),
            ("post", edit, {"payload": '{"args": ["k"], "kwargs": {}}', "reason": "x\x00"}),
            ("post", change, {"note": "hello\x00"}),
            ("post", reverse(GROUPS), {"action": "note", "note": "hi\x00",
                                       "fingerprint": row.fingerprint}),
            ("post", reverse(GROUPS), {"action": "redrive", "fingerprint": "\x00"}),
            ("post", reverse(GROUPS), {"action": "acknowledge", "fingerprint": "\x00"})):
        response = getattr(admin_client, method)(url, data)
        assert response.status_code == 400, (url, data, response.status_code)
    assert not DeadLetterEvent.objects.exists()
    assert not Redrive.objects.exists()
    row.refresh_from_db()
    assert row.status == DeadLetter.Status.NEW


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(max_size=8), value=st.text(max_size=20), nul_in_key=st.booleans())
@example(key="action", value="", nul_in_key=False)  # once drawn, and overwritten by the test
def test_any_form_field_with_nul_is_refused(admin_client, key, value, nul_in_key):
    field, text = (key + "\x00", value) if nul_in_key else (key or "q", value + "\x00")
    for response in (admin_client.get(reverse(GROUPS), {field: text}),
                     # the drawn field last: drawn as "action", its NUL must not be replaced
                     admin_client.post(reverse(GROUPS), {"action": "note", field: text})):
        assert response.status_code == 400
    assert not DeadLetterEvent.objects.exists()
