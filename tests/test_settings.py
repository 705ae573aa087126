"""Settings are safe by default and production settings pass Django's deploy checks."""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.checks.security.base import check_secret_key
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from config.secret_checks import DEV_VALUES, refuse_weak_secret_key
from config.settings.environment import url_setting
from tests.faults.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def run_manage_env(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DJANGO_", "SECRET_KEY", "DEBUG", "FLOWER_"))}
    return clean | {"DJANGO_ENV": "test", "ENV_FILE": ""} | env


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=run_manage_env(**env))


def test_production_refuses_to_start_without_a_secret_key_in_one_line():
    """From manage.py and from the Celery app (workers, beat, Flower's `celery` CLI): the
    reason alone, not the traceback of the settings import it came out of; and no command
    goes on without its settings (Django's own utility let `shell` run code, and
    `makemigrations` fail later on an unrelated error)."""
    worker = subprocess.run([sys.executable, "-m", "celery", "-A", "config", "report"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=run_manage_env(DJANGO_ENV="production"))
    for result in (run_manage("check", DJANGO_ENV="production"), worker,
                   run_manage("shell", "-c", "print('ran')", DJANGO_ENV="production"),
                   run_manage("makemigrations", "--check", DJANGO_ENV="production")):
        assert result.returncode == 1, result.args
        assert result.stderr == "configuration error: Set the SECRET_KEY environment variable\n"
        assert "ran" not in result.stdout


def test_production_settings_pass_the_deploy_checks():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING",
                        DJANGO_ENV="production", SECRET_KEY="production-only-" + "k" * 50,
                        ALLOWED_HOSTS="app.example.com")
    assert result.returncode == 0, result.stderr


def test_an_unknown_environment_name_is_refused():
    result = run_manage("check", DJANGO_ENV="staging")
    assert result.returncode != 0
    assert "DJANGO_ENV must be dev, test or production" in result.stderr


def test_flower_refuses_to_start_without_credentials():
    for value in ("", "admin", "admin:short"):
        result = run_manage("flower", FLOWER_BASIC_AUTH=value)
        assert result.returncode != 0
        assert "refusing to start Flower without auth" in result.stderr


def test_dev_superuser_is_refused_outside_dev():
    result = run_manage("dev_superuser")
    assert result.returncode != 0
    assert "only runs with DJANGO_ENV=dev" in result.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"CELERY_BROKER_URL": "redis://127.0.0.1:1/0"},
     "Redis is not reachable at redis://127.0.0.1:1/0: start it with"),
    ({"DATABASE_URL": "postgres://postgres@127.0.0.1:1/test"}, "postgresql is not reachable"),
    ({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"},
     "RabbitMQ is not reachable at amqp://guest:**@127.0.0.1:1//: start it with: "
     "rabbitmq-server -detached"),
    ({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
      "REDIS_URL": "redis://127.0.0.1:1/0"},
     "Redis is not reachable at redis://127.0.0.1:1/0: start it with"),
    ({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/15", "REDIS_URL": "redis://127.0.0.1:1/0"},
     "Redis is not reachable at redis://127.0.0.1:1/0: start it with"),
    ({"CELERY_BROKER_URL": "sentinel://127.0.0.1:1/0;sentinel://127.0.0.1:2/0",
      "REDIS_SENTINEL_MASTER": "jobs"},
     "Redis is not reachable through the Sentinels at sentinel://127.0.0.1:1/0;"
     "sentinel://127.0.0.1:2/0 (No master found for 'jobs'"),
    ({"CELERY_BROKER_URL": "sentinel://:s3cret@127.0.0.1:1/0;sentinel://:s3cret@127.0.0.1:2/0",
      "REDIS_SENTINEL_MASTER": "jobs"},
     "at sentinel://:**@127.0.0.1:1/0;sentinel://:**@127.0.0.1:2/0 (No master found for 'jobs'"
     "; the Sentinels answered ConnectionError): check that the Sentinels answer"),
    ({"CELERY_BROKER_URL": "amqp://guest:s3cret@127.0.0.1:1//;amqp://guest:s3cret@127.0.0.1:2//"},
     "RabbitMQ is not reachable at amqp://guest:**@127.0.0.1:1//;amqp://guest:**@127.0.0.1:2//"),
    ({"CELERY_BROKER_URL": "amqp://guest:s3cret@127.0.0.1:5672//"},
     "RabbitMQ at amqp://guest:**@127.0.0.1:5672// refused the connection ((0, 0): (403) "
     "ACCESS_REFUSED - Login was refused"),
    ({"CELERY_BROKER_URL": "amqp://guest:s3cret/x@127.0.0.1:5672//"},
     "configuration error: CELERY_BROKER_URL cannot be read as a URL: percent-encode"),
    ({"DATABASE_URL": "postgres://postgres:s3cret#x@127.0.0.1:5432/test"},
     "configuration error: DATABASE_URL cannot be read as a URL: percent-encode"),
    ({"DATABASE_URL": "postgres:s3cret/x@127.0.0.1:5432/test"},  # no //: all of it a path
     "configuration error: DATABASE_URL cannot be read as a URL: percent-encode"),
    ({"CELERY_BROKER_URL": "redis://:s3cret@127.0.0.1:6379/15;redis://:s3cret@127.0.0.2:6379/15",
      "REDIS_URL": ""},
     "configuration error: REDIS_URL lists several servers, which only sentinel:// URLs may"),
], ids=["redis broker", "database", "rabbitmq broker", "redis beside rabbitmq",
         "redis beside a redis broker", "sentinels",
        "sentinels, a password on each URL", "rabbitmq cluster, a password on each URL",
        "rabbitmq refusing the login", "a / in the broker's password",
        "a # in the database's password", "a URL without //",
        "redis beside a broker's failover list"])
def test_a_missing_service_is_reported_in_one_line(env, message):
    result = run_manage("check_services", **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]
    assert "s3cret" not in result.stderr + result.stdout
    assert len(lines[0]) < 600  # not redis-py's repr of every Sentinel client



def unreadable_url_refusal() -> str:
    with pytest.raises(ImproperlyConfigured) as refused:
        url_setting("NO_SUCH_URL_SETTING", default="redis://:s3cr/et@127.0.0.1:6379/0")
    return str(refused.value)


@hypothesis_settings(max_examples=500, database=None)
@given(password=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1),
       scheme=st.sampled_from(["redis", "amqp", "postgres", "sentinel"]))
def test_a_url_setting_is_read_as_written_or_refused_without_its_password(password, scheme):
    """Whatever a password holds, written into the URL as it is: the URL is taken only if
    it reads back with that password and host, else refused in words that are the same
    for every password, so carry none of it."""
    url = f"{scheme}://user:{password}@db.example:5432/0"
    refusal = ""
    try:
        taken = url_setting("NO_SUCH_URL_SETTING", default=url)
    except ImproperlyConfigured as refused:
        refusal = str(refused)
    if refusal:
        assert refusal == unreadable_url_refusal()
    else:
        split = urlsplit(taken)
        assert (split.password, split.hostname, split.port) == (password, "db.example", 5432)


def test_sentry_starts_only_with_a_dsn_and_without_personal_data():
    show = ("import sentry_sdk; o = sentry_sdk.get_client().options; "
            "print(sentry_sdk.get_client().is_active(), o['send_default_pii'], "
            "o['environment'], sorted(type(i).__name__ for i in o['integrations'] "
            "if type(i).__name__ in ('DjangoIntegration', 'CeleryIntegration', "
            "'RedisIntegration', 'LoggingIntegration')))")
    off = run_manage("shell", "--no-imports", "-c", show)
    assert off.stdout.startswith("False"), off.stderr

    # A local, closed port: nothing is ever sent anywhere.
    on = run_manage("shell", "--no-imports", "-c", show, SENTRY_DSN="http://key@127.0.0.1:9/1",
                    SENTRY_ENVIRONMENT="staging")
    assert on.stdout.strip() == ("True False staging ['CeleryIntegration', 'DjangoIntegration', "
                                 "'LoggingIntegration', 'RedisIntegration']"), on.stderr


# --- production refuses what a dev checkout would hand it --------------------------------

STRONG_KEY = "production-only-" + "k" * 50
SECRET_LIKE = re.compile(r"SECRET|TOKEN|PASSWORD|AUTH|_KEY$|DSN|WEBHOOK_URL")


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def production(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run_manage(*args, DJANGO_ENV="production", ALLOWED_HOSTS="app.example.com", **env)


def test_the_list_of_development_values_covers_every_secret_of_env_example():
    shipped = {name: value for name, value in env_example().items()
               if value and (SECRET_LIKE.search(name) or re.search(r"://[^/@]*:[^/@]*@", value))}
    assert "SECRET_KEY" in shipped
    missing = {name: value for name, value in shipped.items()
               if value not in DEV_VALUES.get(name, ())}
    assert not missing, f"add to config.secret_checks.DEV_VALUES: {missing}"


@pytest.mark.parametrize(("name", "value"), sorted(
    (name, value) for name, values in DEV_VALUES.items() for value in values))
def test_production_refuses_each_development_secret(name, value):
    env = {"SECRET_KEY": STRONG_KEY} | {name: value}
    result = production("check", **env)
    assert result.returncode != 0
    assert result.stderr.startswith(
        f"configuration error: {name} is the development value from .env.example"
    ), result.stderr[-2000:]
    assert value not in result.stderr  # the reason, never the secret


def test_production_refuses_a_development_flower_login_among_others():
    result = production("check", SECRET_KEY=STRONG_KEY,
                        FLOWER_BASIC_AUTH="ops:a-real-long-password,admin:admin-dev")
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH is the development value" in result.stderr


def test_production_refuses_debug():
    result = production("check", SECRET_KEY=STRONG_KEY, DEBUG="true")
    assert result.returncode != 0
    assert "DEBUG is true: it is never allowed with DJANGO_ENV=production" in result.stderr


def test_production_refuses_a_weak_secret_key_in_one_line():
    result = production("check", SECRET_KEY="short-but-not-a-dev-value")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "configuration error: SECRET_KEY is too weak for "
        "DJANGO_ENV=production: use at least 50 random characters, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"]


@hypothesis_settings(max_examples=300, database=None)
@given(key=st.one_of(
    st.text(alphabet=st.sampled_from("abcdefgh"), min_size=40, max_size=60),
    st.builds(lambda tail: "django-insecure-" + tail, st.text(min_size=30, max_size=60)),
    st.text(min_size=0, max_size=80)))
def test_a_key_is_refused_exactly_when_django_s_deploy_check_calls_it_weak(key):
    with override_settings(SECRET_KEY=key):
        django_warns = any(w.id == "security.W009" for w in check_secret_key(None))
    try:
        refuse_weak_secret_key(key)
    except ImproperlyConfigured:
        refused = True
    else:
        refused = False
    assert refused == django_warns


def test_the_proxy_ssl_header_is_believed_only_when_a_proxy_is_said_to_set_it():
    show = ("shell", "--no-imports", "-c",
            "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER)")
    assert production(*show, SECRET_KEY=STRONG_KEY).stdout.strip() == "None"
    trusted = production(*show, SECRET_KEY=STRONG_KEY, TRUSTED_PROXY_SSL_HEADER="true")
    assert trusted.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')", trusted.stderr


def test_production_behind_a_trusted_proxy_passes_the_deploy_checks():
    result = production("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=STRONG_KEY,
                        TRUSTED_PROXY_SSL_HEADER="true")
    assert result.returncode == 0, result.stderr


def test_flower_refuses_a_login_it_could_not_compare():
    """Flower compares logins with hmac.compare_digest, which raises on non-ASCII text:
    such a password answered every request with a 500."""
    result = run_manage("flower", FLOWER_BASIC_AUTH="ops:pässwörd-long-enough",
                        FLOWER_ADDRESS="127.0.0.1", FLOWER_PORT=str(free_port()))
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH must be ASCII" in result.stderr


@pytest.mark.parametrize("name", ["NOTIFICATIONS_CHUNK_SIZE", "NOTIFICATIONS_SEND_BATCH",
                                  "NOTIFICATIONS_RATE_PER_SECOND"])
def test_a_campaign_size_or_rate_below_one_is_refused_at_start(name):
    """0 made a chunk's rate-limit wait loop for ever, or the fan-out fail on its first
    campaign; it is a one-line configuration error instead."""
    result = run_manage("check", **{name: "0"})
    assert result.returncode == 1
    assert result.stderr == f"configuration error: {name} must be at least 1, not 0\n"
