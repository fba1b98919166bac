"""Debian's headless Chromium through Selenium and Debian's chromedriver, offline: shared by the
dashboard's browser tests and its benchmark, so both drive the same browser the same way."""

from __future__ import annotations

import os
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                        WebDriverException)
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage",
         # the fleet's private CA is not in the browser's store; TLS itself is still used
         "--ignore-certificate-errors"]
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)
MISSING = f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); deploy/setup.sh installs them"


def start(profile: Path, javascript: bool = True, window: str = "1400,900") -> webdriver.Chrome:
    """A new browser with its own profile directory (Selenium Manager kept offline)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window}")
    options.add_argument(f"--user-data-dir={profile}")
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    os.environ["SE_OFFLINE"] = "true"
    # An explicit driver path: Selenium skips Selenium Manager (and its downloads) entirely.
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def _swapped(error: WebDriverException) -> bool:
    """The page was replaced between finding an element and reading it: Chromium reports that as
    an inspector error rather than as a stale element."""
    return "does not belong to the document" in (error.msg or "")


def until(driver: webdriver.Chrome, condition, what: str, timeout: float, poll: float = 0.1):
    """Wait for condition(driver) to be truthy within timeout; an element missing, stale, or
    from a page just replaced (a form post reloading it) counts as not yet."""
    def check(d):
        try:
            return condition(d)
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        except WebDriverException as error:
            if _swapped(error):
                return False
            raise
    return WebDriverWait(driver, timeout, poll_frequency=poll).until(check, message=f"waiting for {what}")
