"""Functions of Django's standard task API, in a module the test workers do not import at
start (`-I tests.tasks` only): the worker finds each one by its path."""

from tests.tasks import count_run, store, wait_for_release
from workers.core.exceptions import PermanentError, TransientError
from workers.core.standard_tasks import TaskContext, task


@task(queue_name="critical")
def record(key: str, *, note: str = "") -> dict[str, str]:
    """Writes a ledger row (in the run's transaction) and returns what it was given."""
    from tests.ledger.models import Effect

    count_run(key)
    Effect.objects.create(key=key)
    return {"key": key, "note": note}


@task(queue_name="critical", takes_context=True)
def flaky_once(context: TaskContext, key: str) -> int:
    """Fails its first attempt with a transient error; returns the attempt that worked."""
    if count_run(key) == 1:
        raise TransientError(f"the gateway timed out for {key}")
    return context.attempt


@task(queue_name="critical")
def broken(key: str, password: str) -> None:
    """Declined until the test marks it fixed (`test:fixed:<key>`)."""
    count_run(key)
    if not store().exists(f"test:fixed:{key}"):
        raise PermanentError(f"the card for {key} was declined")


@task(queue_name="critical")
def held(key: str) -> str:
    wait_for_release(key)
    return key


@task(queue_name="bulk")
def in_bulk(key: str) -> str:
    count_run(key)
    return key


@task(queue_name="critical")
def in_line(key: str, n: int) -> None:
    """Appends `n` to `test:order:<key>`: the order the runs came in."""
    store().rpush(f"test:order:{key}", n)
