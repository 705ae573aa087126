"""A service process for the outbox fault tests: `python -m tests.faults.enqueue_through_outbox`.

Writes one ledger job per key through the outbox, in one transaction. With
`--crash-after-commit` it SIGKILLs itself at the point between the commit and the
publish: an after-commit callback registered before the jobs runs before theirs.
"""

import argparse
import os
import signal

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys", nargs="+")
    parser.add_argument("--crash-after-commit", action="store_true")
    options = parser.parse_args()
    django.setup()
    from django.db import transaction

    from workers.outbox import outbox_enqueue

    with transaction.atomic():
        if options.crash_after_commit:
            transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
        for key in options.keys:
            outbox_enqueue(task_name="tests.tasks.record_effect", kwargs={"key": key},
                           queue="critical", task_id=key)


if __name__ == "__main__":
    main()
