"""The outbox under faults: a crash between commit and publish (for ledger jobs and for
transactional email), and the broker down at commit (for a service's jobs and for dead
letters an operator requeues)."""

import signal
import time

from django.utils import timezone

from apps.notifications.models import Notification
from tests.faults.brokers import broker_env, broker_idle, broker_name, message_counts
from tests.faults.conftest import BOTH_BROKERS, BOTH_PRIVATE_BROKERS
from tests.faults.harness import ENQUEUE, SWEEP, Ledger, Processes, new_keys, settle
from tests.fixtures import wait_for
from workers.core.models import OutboxMessage
from workers.dead_letters.models import DeadLetter

REQUEUE = ["manage.py", "dlq", "requeue", "--task", "tests.tasks.record_effect"]


def broker_back_and_swept(processes: Processes, private_broker, *, jobs: int) -> float:
    """Start the broker and a worker, run the sweeper; return when the broker came back."""
    private_broker.start()
    back_at = time.monotonic()
    processes.worker("after-outage", private_broker.url)
    sweep = processes.run(SWEEP, **broker_env(private_broker.url), OUTBOX_SWEEP_GRACE="0")
    assert f"published {jobs}, still unpublished 0" in sweep.stdout, sweep.stdout + sweep.stderr
    return back_at


@BOTH_BROKERS
def test_a_crash_between_commit_and_publish_is_repaired_by_the_sweeper(
        processes: Processes, fault_broker, record_ledger):
    keys = new_keys(20)

    service = processes.run([*ENQUEUE, *keys, "--crash-after-commit"],
                            **broker_env(fault_broker))

    assert service.returncode == -signal.SIGKILL
    assert OutboxMessage.objects.filter(task_id__in=keys, published_at=None).count() == 20
    assert message_counts(fault_broker) == (0, 0)  # nothing was published
    processes.worker("after-crash", fault_broker)
    swept_at = time.monotonic()
    sweep = processes.run(SWEEP, **broker_env(fault_broker), OUTBOX_SWEEP_GRACE="0")
    assert "published 20, still unpublished 0" in sweep.stdout, sweep.stdout + sweep.stderr

    record_ledger(settle(f"crash between commit and publish ({broker_name(fault_broker)})",
                         keys, since=swept_at, broker_url=fault_broker))


def test_a_crash_between_commit_and_publish_still_sends_each_email_once(
        processes: Processes, fault_broker, smtp_server, record_ledger):
    recipients = [f"reset-{key}@example.com" for key in new_keys(10)]

    service = processes.run([*ENQUEUE, "--welcome", *recipients, "--crash-after-commit"],
                            **broker_env(fault_broker))

    assert service.returncode == -signal.SIGKILL
    emails = Notification.objects.filter(recipient__in=recipients)
    assert emails.filter(status=Notification.Status.PENDING).count() == 10
    jobs = OutboxMessage.objects.filter(task_name="apps.notifications.tasks.send_notification",
                                        args__0__in=list(emails.values_list("pk", flat=True)))
    assert jobs.filter(published_at=None).count() == 10
    processes.worker("mailer", fault_broker)
    swept_at = time.monotonic()
    for _ in range(2):  # the second sweep: a publisher that died before marking its rows
        sweep = processes.run(SWEEP, **broker_env(fault_broker), OUTBOX_SWEEP_GRACE="0")
        assert "published 10, still unpublished 0" in sweep.stdout, sweep.stdout + sweep.stderr
        jobs.update(published_at=None)
    jobs.update(published_at=timezone.now())  # nothing left for a sweeper

    wait_for(lambda: emails.filter(status=Notification.Status.SENT).count() == 10,
             what="every email to be sent")
    wait_for(lambda: broker_idle(fault_broker), what="both copies of every job to run")
    received = [len(smtp_server.to(to)) for to in recipients]
    record_ledger(Ledger(fault="crash between commit and publish (email)", sent=10,
                         completed=sum(1 for n in received if n), dead_lettered=0,
                         lost=received.count(0), doubled=sum(1 for n in received if n > 1),
                         recovery_seconds=round(time.monotonic() - swept_at, 2)))


@BOTH_PRIVATE_BROKERS
def test_jobs_enqueued_while_the_broker_is_down_run_after_it_returns(
        processes: Processes, private_broker, record_ledger):
    keys = new_keys(20)

    service = processes.run([*ENQUEUE, *keys], **broker_env(private_broker.url))

    assert service.returncode == 0, service.stderr  # the request would have succeeded
    assert "broker unreachable, jobs left for the sweeper" in service.stderr
    # One quick ping told it so: no publish was tried, so no client retries were waited out.
    assert OutboxMessage.objects.filter(task_id__in=keys, published_at=None,
                                        publish_attempts=0).count() == 20
    down = processes.run(SWEEP, **broker_env(private_broker.url), OUTBOX_SWEEP_GRACE="0")
    assert down.returncode == 1
    assert "could not be published: is the broker reachable?" in down.stderr

    back_at = broker_back_and_swept(processes, private_broker, jobs=20)

    record_ledger(settle(f"{broker_name(private_broker.url)} down during outbox enqueue", keys,
                         since=back_at, broker_url=private_broker.url))


@BOTH_PRIVATE_BROKERS
def test_dead_letters_requeued_while_the_broker_is_down_replay_after_it_returns(
        processes: Processes, private_broker, record_ledger):
    keys = new_keys(20)
    DeadLetter.objects.bulk_create(
        DeadLetter(task_id=f"failed-{key}", task_name="tests.tasks.record_effect",
                   queue="critical", kwargs={"key": key}, exception_type="x.Error")
        for key in keys)

    requeue = processes.run(REQUEUE, **broker_env(private_broker.url))

    assert requeue.returncode == 0, requeue.stderr
    assert "broker unreachable, jobs left for the sweeper" in requeue.stderr
    requeued = DeadLetter.objects.filter(status=DeadLetter.Status.REQUEUED)
    assert requeued.count() == 20
    back_at = broker_back_and_swept(processes, private_broker, jobs=20)

    record_ledger(settle(f"{broker_name(private_broker.url)} down during dead-letter requeue",
                         keys, since=back_at, broker_url=private_broker.url))
    wait_for(lambda: not requeued.exists(), what="every replay to resolve its dead letter")
