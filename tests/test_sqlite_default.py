"""`make dev`'s default database is SQLite (no DATABASE_URL): the paths written as
PostgreSQL statements for speed have their SQLite way, taken here in processes of their
own on a migrated SQLite file. A requeue marks its rows and its replays resolve them; a
campaign chunk writes its rows and its outcomes, a refused address failing alone; an
effect-once task claims its key and runs once."""

import json

import pytest
import redis

from tests.fixtures import PRIVATE_BROKER
from tests.production import manage_py

SCRIPT = """
import json
from django.contrib.auth import get_user_model
from apps.notifications.models import Campaign, Kind, Notification
from apps.notifications.services import campaign_create, campaign_send_chunk
from workers.dead_letters.models import DeadLetter
from workers.dead_letters.replay_resolutions import replay_succeeded, replays_resolve

step = {step!r}
if step == "dead letters":
    DeadLetter.objects.bulk_create(DeadLetter(
        task_id=f"sqlite-{{n}}", task_name="tests.tasks.record_effect", queue="bulk",
        args=[f"key-{{n}}"], exception_type="builtins.ValueError", message="failed",
        fingerprint="f" * 16) for n in range(3))
elif step == "resolve":
    for row in DeadLetter.objects.all():
        replay_succeeded(dead_letter_id=row.pk, replay_task_id=row.replay_task_id)
    replays_resolve()
elif step == "campaign":
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"s{{i}}", email=email)
        for i, email in enumerate(["ann@example.com", "a@b.com,evil", "bob@example.com"]))
    campaign = campaign_create(kind=Kind.NEWSLETTER, key="sqlite", subject="News",
                               body="Hello $email")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    campaign_send_chunk(campaign_id=campaign.pk, first_user_id=users[0].pk,
                        last_user_id=users[-1].pk)
elif step == "effect":
    from tests.tasks import record_effect
    for _ in range(2):
        assert record_effect.apply(args=["sqlite"], task_id="same").successful()
print(json.dumps({{
    "dead letters": sorted([row.status, row.requeue_count, bool(row.replay_task_id)]
                           for row in DeadLetter.objects.all()),
    "notifications": sorted([n.recipient, n.status, n.attempts, bool(n.provider_message_id)]
                            for n in Notification.objects.all()),
    "campaign": list(Campaign.objects.values_list("status", flat=True)),
    "effects": sorted(Effect.objects.values_list("key", flat=True)),
    "keys": sorted(TaskEffect.objects.values_list("key", flat=True)),
}}))
"""


@pytest.fixture
def sqlite_env(process_env, tmp_path):
    redis.Redis.from_url(PRIVATE_BROKER).flushdb()  # the replays are published there
    env = process_env | {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                         "CELERY_BROKER_URL": PRIVATE_BROKER, "REDIS_URL": PRIVATE_BROKER,
                         "EMAIL_URL": "memorymail://"}
    migrated = manage_py("migrate", "--noinput", "-v", "0", env=env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    yield env
    redis.Redis.from_url(PRIVATE_BROKER).flushdb()


def run(step: str, env: dict[str, str]) -> dict:
    result = manage_py("shell", "-c", SCRIPT.format(step=step), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_requeue_and_its_replays_on_sqlite(sqlite_env):
    run("dead letters", sqlite_env)

    requeued = manage_py("dlq", "requeue", "--task", "tests.tasks.record_effect",
                         env=sqlite_env)

    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert run("look", sqlite_env)["dead letters"] == [["requeued", 1, True]] * 3
    assert run("resolve", sqlite_env)["dead letters"] == [["resolved", 1, True]] * 3


def test_a_campaign_chunk_on_sqlite(sqlite_env):
    state = run("campaign", sqlite_env)

    assert state["notifications"] == [["a@b.com,evil", "failed", 1, False],
                                      ["ann@example.com", "sent", 1, True],
                                      ["bob@example.com", "sent", 1, True]]
    assert state["campaign"] == ["done"]


def test_an_effect_once_task_on_sqlite(sqlite_env):
    state = run("effect", sqlite_env)

    assert state["effects"] == ["sqlite"]
    assert state["keys"] == ["task:same"]
