"""Fixtures of the browser tests: a real ``fleet-coordinator serve`` and Debian's headless Chromium.

Chromium and chromedriver come from Debian's packages (``make setup`` installs
them when missing). A machine without them fails these tests: they are never
skipped. Screenshots are written only when ``FLEET_UI_SCREENSHOTS`` names a
directory (``FLEET_UI_SCREENSHOTS=docs/ui``), so ordinary runs leave the tree alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.served import Served

WAIT_SECONDS = 20.0
"""How long an explicit wait for a page condition may take (refreshes come every 5 s)."""


def _browser_binaries() -> tuple[str, str]:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(
            "the console's browser tests need Debian's chromium and chromium-driver: "
            "run `make setup` (as root) or `apt-get install chromium chromium-driver`",
            pytrace=False,
        )
    return browser, driver


@dataclass
class Console:
    """A browser signed in (or not yet) to a served coordinator, with an admin API client."""

    driver: webdriver.Chrome
    server: Served
    http: httpx.Client
    shots: Path | None

    @property
    def admin(self) -> dict[str, str]:
        """Headers carrying the admin token (for the API side of the comparisons)."""
        return self.server.admin_headers

    def open(self, path: str) -> None:
        """Load a console page."""
        self.driver.get(self.server.base_url + path)

    def wait(self, condition: Any, timeout: float = WAIT_SECONDS) -> Any:
        """Wait explicitly for a condition on the page."""
        return WebDriverWait(self.driver, timeout).until(condition)

    def wait_text(self, selector: str, text: str) -> None:
        """Wait until the element at ``selector`` shows ``text``."""

        def shows(driver: webdriver.Chrome) -> bool:
            try:
                return text in driver.find_element(By.CSS_SELECTOR, selector).text
            except (NoSuchElementException, StaleElementReferenceException):
                return False
            except WebDriverException as exc:
                # While a page is replaced (a form's redirect with JavaScript off) Chrome
                # may report the node it has just found as gone: look again. (Once in CI:
                # "Node with given id does not belong to the document".)
                if "does not belong to the document" in str(exc):
                    return False
                raise

        self.wait(shows)

    def css(self, selector: str) -> Any:
        """The first element at ``selector``."""
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        """Every element at ``selector``."""
        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def click(self, selector: str) -> None:
        """Click the element at ``selector`` once it is clickable."""
        self.wait(ec.element_to_be_clickable((By.CSS_SELECTOR, selector))).click()

    def screenshot(self, name: str) -> None:
        """Save the page as ``<name>.png`` when screenshots were asked for."""
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            # The whole page, not just the window: grow the window to the document's height.
            height = self.driver.execute_script("return document.documentElement.scrollHeight;")
            self.driver.set_window_size(1360, max(int(height), 600))
            try:
                self.driver.save_screenshot(str(self.shots / f"{name}.png"))
            finally:
                self.driver.set_window_size(1360, 1000)

    def csp_violations(self) -> list[str]:
        """Console messages in which the browser reports a Content-Security-Policy violation."""
        logs = self.driver.get_log("browser")
        return [str(e["message"]) for e in logs if "Content Security Policy" in str(e["message"])]


def chromium(*, javascript: bool = True) -> webdriver.Chrome:
    """A headless Chromium (Debian's) driven by its chromedriver; quit it when done."""
    browser, chromedriver = _browser_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root in a container
        "--disable-dev-shm-usage",
        "--window-size=1360,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    return webdriver.Chrome(options=options, service=Service(chromedriver))


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A served coordinator on SQLite and a headless Chromium, for one test module."""
    cwd = tmp_path_factory.mktemp("console")
    shots_dir = os.environ.get("FLEET_UI_SCREENSHOTS")
    shots = Path(shots_dir).resolve() if shots_dir else None
    env = {"FLEET_REAPER_INTERVAL_SECONDS": "0.5"}
    with Served(cwd=cwd, store_url=f"sqlite:///{cwd}/fleet.db", env=env) as server:
        driver = chromium()
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                yield Console(driver, server, http, shots)
        finally:
            driver.quit()
