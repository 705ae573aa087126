"""The outbox's admin page shows a job's call, headers and last error with secrets redacted,
a positional argument named by the task's signature included."""

import pytest
from django.urls import reverse

from tests import tasks  # noqa: F401  # tests.tasks.login, whose signature names its arguments
from workers.core.models import OutboxMessage


@pytest.mark.django_db
def test_a_jobs_secrets_show_nowhere_on_its_page(admin_client):
    row = OutboxMessage.objects.create(
        task_id="outbox-secrets", task_name="tests.tasks.login", queue="critical",
        args=["alice", "tb-outbox-password"], kwargs={"session": "tb-outbox-session"},
        headers={"x-correlation-id": "abc", "authorization": "tb-outbox-header"},
        last_error="Error connecting to redis://app:tb-outbox-url@cache:6379/0")

    html = admin_client.get(reverse("admin:workers_outboxmessage_change",
                                    args=[row.pk])).content.decode()

    assert [secret for secret in ("tb-outbox-password", "tb-outbox-session",
                                  "tb-outbox-header", "tb-outbox-url") if secret in html] == []
    assert "&quot;alice&quot;" in html
    assert "x-correlation-id" in html
    assert "redis://app:[redacted]@cache:6379/0" in html
