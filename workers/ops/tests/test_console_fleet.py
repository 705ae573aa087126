"""The console as production serves it (gunicorn, production's settings) in a real browser,
over a worker process on the session's kind of broker (`make test` runs it on Redis and
again on RabbitMQ). Work flows on critical, one job waits for its retry, bulk has a backlog
no worker takes, a schedule runs now, and then the worker is killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from selenium.webdriver.common.by import By

from tests.browser import log_in, wait_until
from tests.fixtures import HANG, ROOT
from tests.production import production_env

pytestmark = pytest.mark.broker


def session_leader(node_name: str) -> int:
    """The main process of this checkout's worker named `node_name` (it leads its session:
    the fixture starts it so), found in /proc: other checkouts may run workers so named."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (node_name in (entry / "cmdline").read_text()
                    and (entry / "cwd").resolve() == ROOT.resolve()
                    and os.getsid(int(entry.name)) == int(entry.name)):
                return int(entry.name)
        except (OSError, ProcessLookupError):
            continue
    raise AssertionError(f"no worker {node_name} of this checkout")


ENQUEUE = f"""
from config.celery import app
for n in range(6):
    app.send_task("tests.tasks.log_line", args=[f"flowing-{{n}}"], queue="critical")
# Fails once, then waits ten minutes for its retry.
print(app.send_task("tests.tasks.retries_once", args=["console-{time.time_ns()}", 600],
                    queue="critical").id)
for n in range(3):  # bulk has no worker here: a backlog that only grows older
    app.send_task("tests.tasks.log_line", args=[f"backlog-{{n}}"], queue="bulk")
"""


def enqueue_from_a_shell(env: dict[str, str]) -> str:
    """Send the test's jobs from a process of their own, as an app's code would (on
    RabbitMQ, the queue's age comes from what the sender counted); the retrying job's id."""
    sent = subprocess.run([sys.executable, "manage.py", "shell", "-c", ENQUEUE], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=HANG, check=False)
    assert sent.returncode == 0, sent.stderr
    return sent.stdout.split()[-1]


def queue_row(driver, queue: str):
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-queue="{queue}"]')


def test_an_operator_watches_work_flow_back_up_and_a_worker_die(
        celery_process, web_server, private_fleet_env, process_env, static_root, browser,
        screenshot):
    User.objects.create_superuser("operator", password="operator-password")
    call_command("sync_schedules")  # beat's entries, as `make dev` writes them
    console = f"{web_server(**production_env(process_env, static_root) | private_fleet_env)}" \
              "/admin/workers/"
    celery_process("worker", WORKER_HEARTBEAT_INTERVAL="0.5", **private_fleet_env)
    retrying = enqueue_from_a_shell(process_env | private_fleet_env)
    log_in(browser, console.removesuffix("/admin/workers/"), "operator", "operator-password")

    def flowing_and_backed_up(driver) -> bool:
        driver.get(console)
        bulk, critical = queue_row(driver, "bulk"), queue_row(driver, "critical")
        return (int(critical.find_element(By.CSS_SELECTOR, ".started").text) >= 6
                and critical.get_attribute("data-state") == "ok"
                and critical.find_element(By.CSS_SELECTOR, ".live-workers").text == "1"
                and bulk.find_element(By.CSS_SELECTOR, ".waiting").text == "3"
                and bulk.get_attribute("data-state") == "bad"
                and bool(driver.find_elements(By.CSS_SELECTOR,
                                              f'tr[data-task-id="{retrying}"]')))

    wait_until(browser, flowing_and_backed_up,
               "critical flowing, the bulk backlog and the job waiting for its retry")
    bulk = queue_row(browser, "bulk")
    assert "no live worker consumes it" in bulk.text
    assert "none started" not in bulk.text  # seconds old: not stalled for ten minutes yet
    assert bulk.find_element(By.CSS_SELECTOR, ".oldest").text.split()[0] != "-"
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-queue="critical"] svg.sparkline')
    assert "private-0@test" in browser.find_element(By.ID, "console-workers").text
    sweep = browser.find_element(By.CSS_SELECTOR, 'tr[data-entry="workers-outbox-sweep"]')
    assert sweep.find_element(By.CSS_SELECTOR, ".next-run").text not in ("", "disabled")
    screenshot(browser, "console")
    sweep.find_element(By.CSS_SELECTOR, "button.run-now").click()
    wait_until(browser, lambda d: "sent now: workers-outbox-sweep (task" in d.find_element(
        By.CSS_SELECTOR, "ul.messagelist").text.lower(), "Run now's confirmation")

    os.killpg(session_leader("private-0@test"), signal.SIGKILL)  # as a lost host would

    def lost(driver) -> bool:
        driver.get(console)
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.worker.lost")
        return bool(rows) and "lost: silent for" in rows[0].text

    wait_until(browser, lost, "the killed worker to show as lost")
    assert queue_row(browser, "critical").get_attribute("data-state") == "bad"
