"""Flower with every path behind the dashboard's login.

Flower 2 asks for credentials on its pages and API but serves `/metrics` and
`/healthcheck` to anyone: task names, counts and worker names leak to whoever can reach
the port. `require_login_everywhere()` gives those two handlers the same check as the
rest (basic auth from FLOWER_BASIC_AUTH, or Flower's OAuth login) before Flower starts.
The private names it relies on are checked by workers/runtime/tests/test_celery_internals.py.
"""

import tornado.web
from flower.views import BaseHandler, monitor

OPEN_HANDLERS = (monitor.Metrics, monitor.Healthcheck)


def require_login_everywhere() -> None:
    for handler in OPEN_HANDLERS:
        handler.prepare = _require_login


def _require_login(self: BaseHandler) -> None:
    """Flower's own check: a wrong or missing basic-auth header raises 401 inside it."""
    if not self.get_current_user():
        raise tornado.web.HTTPError(401)
