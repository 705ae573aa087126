"""A real browser for the admin's tests: Debian's Chromium, headless, driven by Selenium
through Debian's ChromeDriver (never a browser or driver downloaded at run time)."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures import HANG

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# `make screenshots` points this at docs/screenshots/; otherwise the test's own tmp dir.
SCREENSHOTS = os.environ.get("SCREENSHOTS_DIR", "")


@pytest.fixture
def browser(tmp_path) -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium is missing: apt-get install chromium chromium-driver "
                    "(.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot(tmp_path) -> Callable[[WebDriver, str], Path]:
    def save(driver: WebDriver, name: str) -> Path:
        directory = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
        return path
    return save


def log_in(driver: WebDriver, base_url: str, username: str, password: str) -> None:
    driver.get(f"{base_url}/admin/login/")
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(driver, lambda d: "/admin/login/" not in d.current_url, "the login")


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], object],
               what: str) -> object:
    """Poll `condition` until it holds; an element missing, or gone because the page
    reloaded itself between finding and reading it (the redrive page refreshes every two
    seconds: Chromium then reports a stale element, or a node that "does not belong to
    the document"), only means "not yet"."""
    return WebDriverWait(driver, HANG, poll_frequency=0.2, ignored_exceptions=(
        NoSuchElementException, StaleElementReferenceException, WebDriverException)).until(
        condition, f"timed out waiting for {what}")


def page_text(driver: WebDriver, element_id: str) -> str:
    """An element's text read in one script call, so a page reloading itself cannot swap
    the element between finding it and reading it ("" while it is missing)."""
    return str(driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
        element_id))
