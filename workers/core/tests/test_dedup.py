"""Enqueue-time dedup: one job per key while it waits or runs."""



from tests.fixtures import wait_for
from tests.ledger.models import Effect
from tests.tasks import FINISHED, record_effect


def test_a_dedup_key_sends_one_job_while_it_waits_or_runs(live_workers, test_redis):
    first = record_effect.apply_async(["dedup", 1.0], queue="bulk", dedup_key="dedup:1")
    second = record_effect.apply_async(["dedup", 1.0], queue="bulk", dedup_key="dedup:1")

    assert second.id == first.id
    wait_for(lambda: test_redis.hget(FINISHED, first.id), what="the deduplicated job")
    third = record_effect.apply_async(["dedup", 0.0], queue="bulk", dedup_key="dedup:1")
    assert third.id != first.id  # released when the job ended
    wait_for(lambda: Effect.objects.filter(key="dedup").count() == 2, what="the third job")
