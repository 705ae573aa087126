"""Timer compaction: cancelled time-limit timers do not pile up in the event loop."""

from types import SimpleNamespace

from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from config.celery import app
from workers.runtime.timers import CancelledTimerCompaction, compact_cancelled


def test_cancelled_timers_are_dropped_once_they_outnumber_live_ones():
    timer = Timer()
    entries = [timer.call_after(60 + i, print, (i,)) for i in range(300)]
    for entry in entries[:250]:
        entry.cancel()

    assert compact_cancelled(timer) == 250
    # What is left is still a heap, in the order the live timers fire.
    assert [event.entry.args[0] for event in timer.queue] == list(range(250, 300))


def test_a_heap_of_mostly_live_timers_is_left_as_it_is():
    timer = Timer()
    entries = [timer.call_after(60 + i, print, (i,)) for i in range(300)]
    for entry in entries[:150]:
        entry.cancel()

    assert compact_cancelled(timer) == 0
    assert len(timer) == 300


def test_every_worker_compacts_its_timers_while_it_runs():
    assert CancelledTimerCompaction in app.steps["worker"]
    worker = SimpleNamespace(hub=Hub(Timer()), use_eventloop=True)
    step = CancelledTimerCompaction(worker)

    step.start(worker)
    (scheduled,) = worker.hub.timer.queue
    step.stop(worker)

    assert scheduled.entry.canceled
