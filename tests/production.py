"""Production-shaped processes for the tests: the web application under gunicorn and
`manage.py` commands, each a process of its own that imports only what its code path
imports, as deployed.

A test that runs the admin through Django's test client, or a command through
`call_command`, runs it in the test process, where every task module has long been
imported: it cannot see a gunicorn worker or a CLI process that never imported the task it
is asked about. These helpers start the real thing:

- `gunicorn_server`: `gunicorn config.wsgi:application --workers 2` with
  DJANGO_ENV=production (the image's settings: manifest static storage, WhiteNoise serving
  what `collectstatic` wrote, DEBUG off) on the migrated test database and the session's
  broker. Plain HTTP on localhost, so the TLS-only cookies and the HTTPS redirect are off:
  in production a proxy in front of gunicorn ends TLS.
- `admin_session` / `post_form`: an admin login and form posts over HTTP, with Django's
  CSRF token, through `requests`.
- `manage_py`: `python manage.py ...` as a child process.

Rows a test writes must be committed for these processes to see them: the fixture takes
`transactional_db`, like `live_workers` and `web_process`.
"""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from django.conf import settings

from tests.fixtures import HANG, ROOT

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def production_env(process_env: dict[str, str], static_root: Path) -> dict[str, str]:
    """The child-process environment with production's settings (DJANGO_ENV=production),
    but reachable over plain HTTP on 127.0.0.1 and serving `static_root`."""
    return process_env | {
        "DJANGO_ENV": "production",
        "DEBUG": "false",
        "SECRET_KEY": "production-shaped-tests-only-" + "0123456789abcdef" * 4,  # not weak
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(static_root),  # read by tests/settings.py
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
    }


def manage_py(*args: str, env: dict[str, str],
              timeout: float = HANG) -> subprocess.CompletedProcess[str]:
    """`python manage.py <args>` as a process of its own (stdout and stderr captured)."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def static_root(process_env, tmp_path_factory) -> Path:
    """What the image's `collectstatic` writes (docker/Dockerfile), into a directory of
    the session's: the manifest storage of DJANGO_ENV=production, compressed copies too."""
    root = tmp_path_factory.mktemp("staticfiles")
    result = manage_py("collectstatic", "--noinput", "-v", "0",
                       env=production_env(process_env, root))
    if result.returncode != 0:
        pytest.fail(f"collectstatic failed ({result.returncode}):\n{result.stderr[-3000:]}")
    if not (root / "staticfiles.json").exists():
        pytest.fail(f"collectstatic wrote no manifest into {root}: does tests/settings.py "
                    "read STATIC_ROOT from the environment?")
    return root


@pytest.fixture
def gunicorn_server(web_server, process_env, static_root) -> str:
    """The web application under gunicorn with production's settings, on the session's
    broker; its base URL."""
    return web_server(**production_env(process_env, static_root)
                      | {"CELERY_BROKER_URL": settings.CELERY_BROKER_URL})


def csrf_token(session: requests.Session, page: str = "") -> str:
    """The token a form on `page` carries, else the CSRF cookie's (Django accepts both)."""
    match = CSRF_FIELD.search(page)
    if match:
        return match.group(1)
    token = session.cookies.get("csrftoken")
    if not token:
        raise AssertionError("no CSRF token: neither a form on the page nor a csrftoken cookie")
    return token


def admin_session(base_url: str, username: str, password: str) -> requests.Session:
    """A `requests` session logged in through /admin/login/, as a browser does it."""
    session = requests.Session()
    login_url = f"{base_url}/admin/login/"
    page = session.get(login_url, timeout=HANG)
    page.raise_for_status()
    response = session.post(login_url, timeout=HANG, data={
        "username": username, "password": password, "next": "/admin/",
        "csrfmiddlewaretoken": csrf_token(session, page.text)})
    if response.status_code != 200 or urlparse(response.url).path == "/admin/login/":
        raise AssertionError(f"could not log in as {username!r} at {login_url}: "
                             f"{response.status_code} {response.url}")
    return session


def post_form(session: requests.Session, url: str, data: dict[str, object], *,
              form_page: str | None = None, allow_redirects: bool = True) -> requests.Response:
    """POST `data` to `url` with a CSRF token, as the form does: the page holding the
    form (`form_page`, default `url`) is fetched first and its token is sent back."""
    page = session.get(form_page or url, timeout=HANG)
    return session.post(url, data={**data, "csrfmiddlewaretoken": csrf_token(session, page.text)},
                        timeout=HANG, allow_redirects=allow_redirects)
