"""Waiting for an event by polling, with a bound that only catches hangs.

No Django here: the soak and the private servers use it before settings are read.
"""

import time
from collections.abc import Callable


def poll_until(predicate: Callable[[], object], *, timeout: float,
               interval: float = 0.05) -> object:
    """Call `predicate` until it returns something truthy, and return that; return None
    once `timeout` seconds have passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
