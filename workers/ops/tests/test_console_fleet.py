"""The console served by gunicorn, in a browser, over a fleet that breaks: a backlog no
worker takes, and a worker killed mid-run."""

import os
import signal
from pathlib import Path

from django.contrib.auth.models import User
from kombu import Connection
from selenium.webdriver.common.by import By

from config.celery import app
from tests.browser import log_in, wait_until
from tests.fixtures import PRIVATE_BROKER, ROOT


def publish_to_bulk(name: str, *args: object) -> None:
    with Connection(PRIVATE_BROKER) as connection, app.amqp.Producer(connection) as producer:
        app.send_task(name, args=args, queue="bulk", producer=producer)


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


def queue_row(driver, queue: str):
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-queue="{queue}"]')


def test_a_backlog_and_a_killed_worker_show_red_on_the_console(celery_process, web_process,
                                                               browser):
    User.objects.create_superuser("operator", password="operator-password")
    celery_process("worker", WORKER_HEARTBEAT_INTERVAL="0.5")
    for n in range(3):  # bulk has no worker here: a backlog that only grows older
        publish_to_bulk("tests.tasks.log_line", f"backlog-{n}")
    log_in(browser, web_process, "operator", "operator-password")
    browser.get(f"{web_process}/admin/workers/")

    def backlog_and_live_worker(driver) -> bool:
        driver.get(driver.current_url)
        bulk = queue_row(driver, "bulk")
        critical = queue_row(driver, "critical")
        return (bulk.find_element(By.CSS_SELECTOR, ".waiting").text == "3"
                and bulk.get_attribute("data-state") == "bad"
                and critical.find_element(By.CSS_SELECTOR, ".live-workers").text == "1")

    wait_until(browser, backlog_and_live_worker, "the backlog and the live critical worker")
    bulk = queue_row(browser, "bulk")
    assert "no live worker consumes it" in bulk.text
    assert bulk.find_element(By.CSS_SELECTOR, ".oldest").text.split()[0] != "-"

    os.killpg(session_leader("private-0@test"), signal.SIGKILL)  # as a lost host would

    def lost(driver) -> bool:
        driver.get(driver.current_url)
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.worker.lost")
        return bool(rows) and "lost: silent for" in rows[0].text

    wait_until(browser, lost, "the killed worker to show as lost")
    assert queue_row(browser, "critical").get_attribute("data-state") == "bad"
