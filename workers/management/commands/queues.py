"""`manage.py queues stats|probe`: is work waiting, and is anyone consuming it?"""

import time
from typing import Any

from celery import current_app
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.core.management.base import CommandError, CommandParser

from workers.core.queue_stats import queue_stats
from workers.core.routing import QUEUES
from workers.management.operator_command import OperatorCommand
from workers.ops.services_down import services_down
from workers.ops.tasks import probe


class Command(OperatorCommand):
    help = "Show queue depth and oldest-message age, or time a probe through each queue."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("stats", help="waiting messages and oldest age per queue")
        probe_parser = actions.add_parser("probe", help="round trip through each queue")
        probe_parser.add_argument("--timeout", type=float, default=5.0,
                                  help="seconds to wait for each queue's consumer")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "stats":
            self._stats()
        else:
            self._probe(timeout=options["timeout"])

    def _stats(self) -> None:
        rows = list(queue_stats(queues=QUEUES))  # a broker error before the table's header
        self.stdout.write(f"{'queue':10} {'waiting':>8} {'oldest':>10}")
        for row in rows:
            age = "-" if row.oldest_age_seconds is None else f"{row.oldest_age_seconds:.1f}s"
            self.stdout.write(f"{row.name:10} {row.waiting:>8} {age:>10}")

    def _probe(self, *, timeout: float) -> None:
        _open_connections()
        silent = []
        for queue in QUEUES:
            sent_at = time.time()
            result = probe.apply_async(args=(sent_at,), queue=queue, expires=timeout)
            try:
                answer = result.get(timeout=timeout, interval=0.01)
            except CeleryTimeoutError:
                silent.append(queue)
                self.stdout.write(f"{queue:10} no consumer answered within {timeout:.0f}s")
                continue
            finally:
                result.forget()
            round_trip_ms = (time.time() - sent_at) * 1000
            self.stdout.write(f"{queue:10} round trip {round_trip_ms:7.1f} ms  "
                              f"(worker {answer['worker']})")
        if silent:
            raise CommandError(f"no consumer on {', '.join(silent)}: start the worker "
                               "(make dev, or docker compose up worker-critical worker-bulk)")


def _open_connections() -> None:
    """Connect to the broker and the result store first, so the timing is the queue's; a
    service that does not answer (or refuses the URL's login) ends the probe with
    `check_services`' line for it."""
    problems = services_down()
    if problems:
        raise CommandError("\n".join(problems))
    current_app.backend.client.ping()  # type: ignore[attr-defined]  # the Redis backend
