"""The triage pages in a real browser (headless Chromium) against a live server and real
workers: find a cause, redrive it behind a canary and watch it finish; edit and requeue;
a read-only operator sees no action."""

from celery.utils import uuid
from django.contrib.auth.models import Group, User
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser import log_in, page_text, wait_until
from tests.factories import DeadLetterFactory, dead_letter_roles
from tests.fixtures import wait_for
from workers.core.routing import CRITICAL
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
    assert row.find_element(By.CSS_SELECTOR, ".count-new").text == "30"
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
    wait_until(browser, lambda d: "Done" in page_text(d, "redrive-status"),
               "the redrive to show as done")
    screenshot(browser, "redrive-done")  # a finished redrive's page no longer refreshes
    assert browser.find_element(By.ID, "figure-percent").text == "100% of 30"
    assert browser.find_element(By.ID, "redrive-bar").get_attribute("value") == "100"
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


def test_an_operator_redrives_a_cause_through_a_failing_canary_then_requeues_all(
        live_workers, live_server, admin_user, browser, screenshot, test_redis):
    key = uuid()
    failing = [DeadLetterFactory(task_name="tests.tasks.fails_until_fixed", args=[key],
                                 queue=CRITICAL, message="not fixed yet") for _ in range(20)]
    fixed_later = [DeadLetterFactory(task_name="tests.tasks.log_line", args=[uuid()],
                                     queue=CRITICAL, message="other cause") for _ in range(5)]
    DeadLetter.objects.bulk_create(DeadLetterFactory.build(
        status=DeadLetter.Status.DISCARDED, message="kept for the record") for _ in range(120))
    log_in(browser, live_server.url, "admin", "password")

    # By cause, sorted by count: the failing cause first, its 20 rows new.
    browser.get(f"{live_server.url}/admin/workers/deadletter/groups/")
    browser.find_element(By.CSS_SELECTOR, 'a[data-order="count"]').click()
    row = wait_until(browser, lambda d: d.find_element(
        By.CSS_SELECTOR, f'tr[data-fingerprint="{failing[0].fingerprint}"]'), "the cause")
    assert row.find_element(By.CSS_SELECTOR, ".count-new").text == "20"
    screenshot(browser, "causes")
    row.find_element(By.CSS_SELECTOR, "button.redrive").click()

    form = wait_until(browser, lambda d: d.find_element(By.ID, "start-form"), "the form")
    for name, value in (("rate", "20"), ("canary", "4")):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "start-redrive").click()
    wait_until(browser, lambda d: "Paused" in page_text(d, "redrive-status"),
               "the canary to pause the redrive")
    assert "canary: 4 of 4" in browser.find_element(By.ID, "redrive-reason").text
    screenshot(browser, "redrive-paused")

    test_redis.set(f"test:fixed:{key}", 1)  # the operator fixes the cause, then resumes
    browser.find_element(By.ID, "resume-redrive").click()
    wait_until(browser, lambda d: "Done" in page_text(d, "redrive-status"),
               "the resumed redrive to finish")
    screenshot(browser, "redrive-done")
    assert browser.find_element(By.ID, "figure-succeeded").text == "20"
    assert browser.find_element(By.ID, "figure-in-flight").text == "0"
    assert not DeadLetter.objects.filter(fingerprint=failing[0].fingerprint,
                                         status=DeadLetter.Status.NEW).exists()

    # Select all 149 rows and requeue: only the 5 open ones go, the discarded never.
    browser.get(f"{live_server.url}/admin/workers/deadletter/")
    browser.find_element(By.ID, "action-toggle").click()
    browser.find_element(By.CSS_SELECTOR, ".actions .question a").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("requeue")
    browser.find_element(By.CSS_SELECTOR, ".actions button[name=index]").click()
    count = wait_until(browser, lambda d: d.find_element(By.ID, "confirm-count"), "the count")
    assert count.text == "5"
    assert "120 discarded" in browser.find_element(By.ID, "confirm-left-out").text
    screenshot(browser, "requeue-select-all")
    browser.find_element(By.CSS_SELECTOR, "#confirm-form input[type=submit]").click()
    done = wait_until(browser, lambda d: d.find_element(By.ID, "result-done"), "the result")
    assert done.text == "5"
    wait_for(lambda: DeadLetter.objects.filter(pk__in=[r.pk for r in fixed_later],
                                               status=DeadLetter.Status.RESOLVED).count() == 5,
             what="the five replays to succeed")
    assert not DeadLetter.objects.filter(status=DeadLetter.Status.DISCARDED,
                                         requeue_count__gt=0).exists()
