"""A service process for the outbox fault tests: `python -m tests.faults.enqueue_through_outbox`.

Writes one ledger job per key through the outbox, in one transaction (with `--welcome`,
one welcome email per key, the key being the address, as a sign-up view would). With
`--per-transaction N`, one transaction per N keys, one after the other, as a stream of
requests would. With `--crash-after-commit` it SIGKILLs itself at the point between the
commit and the publish: an after-commit callback registered before the jobs runs before
theirs.
"""

import argparse
import os
import signal

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("keys", nargs="+")
    parser.add_argument("--crash-after-commit", action="store_true")
    parser.add_argument("--welcome", action="store_true")
    parser.add_argument("--per-transaction", type=int, default=0)
    options = parser.parse_args()
    django.setup()
    from django.db import transaction

    from apps.notifications.models import Kind
    from apps.notifications.services import notification_request
    from workers.core.outbox import outbox_enqueue

    step = options.per_transaction or len(options.keys)
    for start in range(0, len(options.keys), step):
        with transaction.atomic():
            if options.crash_after_commit:
                transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
            for key in options.keys[start:start + step]:
                if options.welcome:
                    notification_request(kind=Kind.WELCOME, recipient=key, subject="Welcome",
                                         body="Glad you are here.", idempotency_key=key)
                else:
                    outbox_enqueue(task_name="tests.tasks.record_effect",
                                   kwargs={"key": key}, queue="critical", task_id=key)


if __name__ == "__main__":
    main()
