"""Effect-once keys: a task's database effects commit once per key."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone
from hypothesis import example, given, settings
from hypothesis import strategies as st

from apps.billing.models import Invoice
from apps.billing.tasks import charge_invoice
from tests.factories import invoice_for
from tests.ledger.models import Effect
from tests.tasks import record_effect, record_effect_for
from workers.core.effects import effects_purge_expired
from workers.core.models import TaskEffect


@pytest.fixture
def unpublished(monkeypatch):
    """Keep the receipts these eager runs queue in the outbox: a worker running them would
    race the test database's teardown."""
    monkeypatch.setattr("workers.core.outbox._publish", lambda rows, *, mark: (0, []))


@pytest.mark.django_db(transaction=True)
def test_an_effect_once_task_repeated_with_its_id_has_its_effects_once():
    for _ in range(3):
        record_effect.apply(args=["repeated"], task_id="same-id")
    record_effect.apply(args=["repeated"], task_id="another-id")  # a replay runs again

    assert Effect.objects.filter(key="repeated").count() == 2
    assert TaskEffect.objects.filter(key__in=["task:same-id", "task:another-id"]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_records_no_key_so_the_retry_runs(stripe_api, unpublished):

    invoice = invoice_for("flaky@example.com", customer_id="cus_flaky")

    # Eager: the 500 from the gateway is retried inline under the same task id. Had the
    # failed attempt kept its key, the retry would have been skipped as a repeat.
    charge_invoice.apply(args=[invoice.pk], task_id="charge-1")

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert len(stripe_api.requests) == 2
    assert TaskEffect.objects.filter(key="task:charge-1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_declared_key_makes_a_second_job_for_the_same_object_a_no_op():
    record_effect_for.apply(args=["declared"], task_id="first")
    record_effect_for.apply(args=["declared"], task_id="second")

    assert Effect.objects.filter(key="declared").count() == 1
    assert TaskEffect.objects.get(key="ledger:declared").task_id == "first"


@pytest.mark.django_db
def test_expired_keys_are_purged_and_live_ones_kept():
    now = timezone.now()
    TaskEffect.objects.create(key="old", task_name="t", task_id="1", expires_at=now)
    TaskEffect.objects.create(key="live", task_name="t", task_id="2",
                              expires_at=now + timedelta(days=1))

    assert effects_purge_expired(now=now + timedelta(seconds=1)) == 1
    assert list(TaskEffect.objects.values_list("key", flat=True)) == ["live"]


@pytest.mark.django_db(transaction=True)
def test_a_database_error_while_claiming_the_key_is_retried_not_dead_lettered(monkeypatch):
    """Outside `run`, where autoretry_for does not reach: the PostgreSQL restart case."""
    from workers.core import effects

    claims = []

    def restarting_then_back(**claim):
        claims.append(claim["key"])
        if len(claims) == 1:
            raise OperationalError("the database system is starting up")
        return real_claim(**claim)

    real_claim = effects.effect_claim
    monkeypatch.setattr(effects, "effect_claim", restarting_then_back)

    result = record_effect.apply(args=["claim-retried"], task_id="claim-retried")

    assert result.successful()
    assert len(claims) == 2
    assert Effect.objects.filter(key="claim-retried").count() == 1


def _terminate(backend_pid: int) -> None:
    """End a session from another connection, as a PostgreSQL restart or an idle timeout
    would: the kept connection learns it only at its next statement."""
    from django.db import connections

    other = connections["default"].copy("terminator")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_dead_kept_connection_found_by_the_claim_is_replaced_and_the_task_runs_once(
        monkeypatch):
    """The claim stands in for Django's `SELECT 1` health check: the connection it finds
    dead is replaced and the claim made again, with no Celery retry."""
    from django.db import connection

    from workers.core import effects

    claims = []
    real_claim = effects.effect_claim

    def counted(**claim):
        claims.append(claim["key"])
        return real_claim(**claim)

    monkeypatch.setattr(effects, "effect_claim", counted)
    monkeypatch.setattr(record_effect, "retry", lambda *a, **kw: pytest.fail("retried"))
    connection.ensure_connection()
    dead_pid = connection.connection.info.backend_pid
    connection.close_if_unusable_or_obsolete()  # what task_prerun does: check due again
    assert connection.connection is not None
    assert not connection.health_check_done
    _terminate(dead_pid)

    result = record_effect.apply(args=["after-restart"], task_id="after-restart")

    assert result.successful(), result.traceback
    assert claims == ["task:after-restart", "task:after-restart"]
    assert connection.connection.info.backend_pid != dead_pid
    assert Effect.objects.filter(key="after-restart").count() == 1
    assert TaskEffect.objects.filter(key="task:after-restart").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_claim_failing_on_a_checked_connection_goes_to_a_celery_retry(monkeypatch):
    """Only an unchecked connection's failure is the health check's to absorb: once the
    connection is checked (or fresh), a failing claim is the database's outage."""
    from django.db import connection

    from workers.core import effects

    def down(**claim):
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(effects, "effect_claim", down)
    retries = []

    def retry(*args, **kwargs):
        retries.append(kwargs["exc"])
        raise RuntimeError("retry requested")

    monkeypatch.setattr(record_effect, "retry", retry)
    connection.ensure_connection()
    connection.health_check_done = True

    with pytest.raises(RuntimeError, match="retry requested"):
        record_effect.apply(args=["down"], task_id="down", throw=True)

    assert len(retries) == 1
    assert not Effect.objects.filter(key="down").exists()


def test_the_health_check_state_the_claim_stands_in_for():
    """Django's private names `effect_connection_unchecked` sets: the check runs before a
    cursor is made unless it is marked done, and is due again at each task's recycle."""
    import inspect

    from django.db.backends.base.base import BaseDatabaseWrapper

    check = inspect.getsource(BaseDatabaseWrapper.close_if_health_check_failed)
    assert "self.health_check_enabled" in check
    assert "self.health_check_done" in check
    assert "close_if_health_check_failed" in inspect.getsource(BaseDatabaseWrapper._cursor)
    assert "self.health_check_done = False" in inspect.getsource(
        BaseDatabaseWrapper.close_if_unusable_or_obsolete)


@pytest.mark.django_db(transaction=True)
def test_the_claim_opens_the_transaction_the_body_and_the_commit_use():
    """The claim sends the transaction's BEGIN itself, past psycopg: psycopg must see the
    transaction open (no second BEGIN, which PostgreSQL would answer with a warning), and
    Django's commit must commit it, as another session sees."""
    from django.db import connection, connections

    connection.ensure_connection()
    notices = []
    connection.connection.add_notice_handler(lambda notice: notices.append(notice.message_primary))

    result = record_effect.apply(args=["one-transaction"], task_id="one-transaction")

    assert result.successful(), result.traceback
    assert notices == []
    assert connection.connection.info.transaction_status.name == "IDLE"
    other = connections["default"].copy("observer")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM workers_taskeffect t, ledger_effect e "
                           "WHERE t.key = 'task:one-transaction' AND e.key = 'one-transaction'"
                           " AND t.xmin = e.xmin")  # the same transaction wrote both
            assert cursor.fetchone() == (1,)
    finally:
        other.close()


@pytest.mark.django_db
@settings(max_examples=150, deadline=None)
@example(key="a\x00b")  # always the refusal, besides what hypothesis draws
@example(key="'); DROP TABLE workers_taskeffect; --$$\\")
@given(key=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=255))
def test_a_key_of_any_text_is_claimed_as_written_once_and_a_nul_is_refused(key):
    """The claim quotes its values itself: whatever the task's arguments make of the key
    (quotes, backslashes, any script), it is stored as it is, and a second claim finds it.
    A NUL, which libpq's quoting would silently cut at, is refused like the ORM refuses
    it, and nothing is stored."""
    from django.db import DataError, transaction

    from workers.core.effects import effect_claim

    with transaction.atomic():
        if "\x00" in key:
            with pytest.raises(DataError, match="NUL"), transaction.atomic():
                effect_claim(key=key, task_name="t", task_id="1")
            assert not TaskEffect.objects.exists()
        else:
            assert effect_claim(key=key, task_name="t'\\", task_id="1") is True
            assert effect_claim(key=key, task_name="t", task_id="2") is False
            assert list(TaskEffect.objects.values_list("key", "task_name", "task_id")) == [
                (key, "t'\\", "1")]
        transaction.set_rollback(True)


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["k" * 255 + " ", "k" * 254 + "  ", "k" * 300])
def test_a_key_longer_than_the_table_holds_is_refused_not_cut(key):
    """PostgreSQL stores a varchar value too long only by trailing spaces cut to the
    length: the longer key would claim, and later be taken for, the shorter one."""
    from django.db import DataError

    from workers.core.effects import effect_claim

    with pytest.raises(DataError, match="longer than the 255"):
        effect_claim(key=key, task_name="t", task_id="1")
    assert effect_claim(key=key.rstrip()[:255], task_name="t", task_id="2") is True
