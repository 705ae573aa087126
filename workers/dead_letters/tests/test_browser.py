"""The triage pages in a real browser (headless Chromium) against a live server and real
workers: find a cause, redrive it behind a canary and watch it finish; edit and requeue;
a read-only operator sees no action."""

from celery.utils import uuid
from django.contrib.auth.models import Group, User
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser import log_in, wait_until
from tests.factories import DeadLetterFactory, dead_letter_roles
from tests.fixtures import wait_for
from workers.api.routing import CRITICAL
from workers.dead_letters.models import DeadLetter, Redrive


def test_an_operator_finds_a_cause_and_redrives_it_behind_a_canary(
        live_workers, live_server, admin_user, browser, screenshot):
    fixed = [DeadLetterFactory(task_name="tests.tasks.log_line", queue=CRITICAL,
                               args=[uuid()], message=f"upstream timed out for order {n}")
             for n in range(30)]
    for cause in ("a", "b", "c"):
        DeadLetterFactory(task_name="tests.tasks.undeclared", message=f"cause {cause}")
    log_in(browser, live_server.url, "admin", "password")

    browser.get(f"{live_server.url}/admin/workers/deadletter/")
    screenshot(browser, "dead-letters")
    browser.find_element(By.ID, "by-cause").click()
    row = wait_until(browser, lambda d: d.find_element(
        By.CSS_SELECTOR, f'tr[data-fingerprint="{fixed[0].fingerprint}"]'), "the cause")
    assert "30 / 30" in row.text
    screenshot(browser, "causes")
    row.find_element(By.CSS_SELECTOR, "button.redrive").click()

    form = wait_until(browser, lambda d: d.find_element(By.ID, "redrive-start"), "the form")
    assert "30 dead letter(s) selected" in form.text
    for name, value in (("rate", "20"), ("canary", "5")):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    Select(form.find_element(By.NAME, "queue")).select_by_value("")
    screenshot(browser, "redrive-start")
    browser.find_element(By.ID, "start-redrive").click()

    # The progress page refreshes itself every two seconds until the redrive is done.
    wait_until(browser, lambda d: "Done" in d.find_element(By.CSS_SELECTOR,
                                                           ".field-status").text,
               "the redrive to show as done")
    screenshot(browser, "redrive-done")  # a finished redrive's page no longer refreshes
    assert "30 / 30" in browser.find_element(By.CSS_SELECTOR, ".field-progress").text
    redrive = Redrive.objects.get()
    assert (redrive.succeeded, redrive.failed) == (30, 0)
    assert not DeadLetter.objects.filter(pk__in=[r.pk for r in fixed]).exclude(
        status=DeadLetter.Status.RESOLVED).exists()


def test_an_operator_edits_the_arguments_and_requeues(live_workers, live_server, admin_user,
                                                      browser, screenshot):
    row = DeadLetterFactory(task_name="tests.tasks.log_line", queue=CRITICAL,
                            kwargs={"keyy": "k1"},
                            message="log_line() got an unexpected keyword argument 'keyy'")
    log_in(browser, live_server.url, "admin", "password")
    browser.get(f"{live_server.url}/admin/workers/deadletter/{row.pk}/change/")
    browser.find_element(By.ID, "edit-requeue").click()

    payload = wait_until(browser, lambda d: d.find_element(By.ID, "payload"), "the editor")
    payload.clear()
    payload.send_keys('{"args": [], "kwargs": {"keyy": ')
    wait_until(browser, lambda d: "not valid JSON" in d.find_element(By.ID, "json-state").text,
               "the editor to flag the unfinished JSON")
    payload.send_keys('"k1", "extra": 1}}')
    browser.find_element(By.ID, "reason").send_keys("producer typo")
    browser.find_element(By.ID, "save-requeue").click()
    error = wait_until(browser, lambda d: d.find_element(By.ID, "edit-error"), "the refusal")
    assert "does not accept these arguments" in error.text

    payload = browser.find_element(By.ID, "payload")
    payload.clear()
    payload.send_keys('{"args": [], "kwargs": {"key": "k1"}}')
    screenshot(browser, "edit-and-requeue")
    browser.find_element(By.ID, "save-requeue").click()
    wait_until(browser, lambda d: "Edited and requeued" in d.page_source, "the confirmation")
    wait_for(lambda: DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.RESOLVED,
             what="the edited replay to succeed")


def test_a_read_only_operator_sees_no_action_button(live_server, browser, screenshot,
                                                     transactional_db):
    viewer = User.objects.create_user("viewer", password="viewer-password", is_staff=True)
    dead_letter_roles()
    viewer.groups.add(Group.objects.get(name="Dead-letter viewers"))
    row = DeadLetterFactory(kwargs={"card_number": "4242424242424242"})
    log_in(browser, live_server.url, "viewer", "viewer-password")

    browser.get(f"{live_server.url}/admin/workers/deadletter/")
    assert row.task_name in browser.page_source
    # Exports (redacted) are all a viewer may run from the list.
    offered = [option.get_attribute("value") for option in
               Select(browser.find_element(By.NAME, "action")).options]
    assert offered == ["", "export_csv", "export_json"]
    browser.find_element(By.ID, "by-cause").click()
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.group"), "the causes")
    assert not browser.find_elements(By.CSS_SELECTOR, "#groups button")
    browser.get(f"{live_server.url}/admin/workers/deadletter/{row.pk}/change/")
    assert not browser.find_elements(By.CSS_SELECTOR, "button.historylink")
    assert not browser.find_elements(By.ID, "edit-requeue")
    assert "4242424242424242" not in browser.page_source
    screenshot(browser, "read-only")
