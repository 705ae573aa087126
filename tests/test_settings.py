"""Settings are safe by default and production settings pass Django's deploy checks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DJANGO_", "SECRET_KEY", "DEBUG", "FLOWER_"))}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env=clean | {"DJANGO_ENV": "test", "ENV_FILE": ""} | env)


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", DJANGO_ENV="production")
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


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
], ids=["redis broker", "database", "rabbitmq broker", "redis beside rabbitmq"])
def test_a_missing_service_is_reported_in_one_line(env, message):
    result = run_manage("check_services", **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]


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
