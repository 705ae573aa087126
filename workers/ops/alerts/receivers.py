"""What sets alerts off: a dead letter committed, and the heartbeat of any beat or worker.

Connected in the workers app's `ready()`. Neither receiver may fail or slow down what
sent it: a dead letter is alerted on after its row commits, and errors are logged; the
periodic checks run in a thread of their own, in one process of the whole fleet per
ALERTS_CHECK_INTERVAL (a Redis key claimed with SET NX).
"""

import logging
import os
import socket
import threading
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone
from redis.exceptions import RedisError

from workers.core.platform_redis import redis_client
from workers.core.signals import task_dead_lettered
from workers.ops.alerts.checks import alerts_run_checks
from workers.ops.alerts.services import alert_on_dead_letter
from workers.runtime.heartbeat import heartbeat

logger = logging.getLogger(__name__)

CHECK_SLOT_KEY = "workers:alerts:check"


def alert_on_new_dead_letter(sender: str, dead_letter_id: int, **_: Any) -> None:
    """From `task_dead_lettered`, which is sent once the new row has committed."""
    try:
        alert_on_dead_letter(dead_letter_id=dead_letter_id)
    except Exception:  # the dead letter is stored; an alert lost is logged, never raised
        logger.exception("could not raise the alert for dead letter %s", dead_letter_id)


def run_checks_if_due(sender: Any, **_: Any) -> None:
    """From every heartbeat; the one process that claims this interval's slot checks."""
    interval = settings.ALERTS_CHECK_INTERVAL
    if interval <= 0:
        return
    try:
        claimed = redis_client().set(CHECK_SLOT_KEY, f"{socket.gethostname()}:{os.getpid()}",
                                     nx=True, px=int(interval * 1000))
    except RedisError:
        return  # the heartbeat goes on; the checks need Redis anyway
    if claimed:
        threading.Thread(target=run_checks, name="alerts-check", daemon=True).start()


def run_checks() -> None:
    try:
        alerts_run_checks(now=timezone.now())
    except Exception:
        logger.exception("alert checks failed; the next interval tries again")
    finally:
        connections.close_all()  # this thread's own connections


def connect() -> None:
    task_dead_lettered.connect(alert_on_new_dead_letter, dispatch_uid="alerts.dead_letter")
    heartbeat.connect(run_checks_if_due, dispatch_uid="alerts.checks")
