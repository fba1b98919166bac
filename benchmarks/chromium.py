"""Debian's headless Chromium through Selenium and Debian's chromedriver, offline: shared by the
dashboard's browser tests and its benchmark, so both drive the same browser the same way."""

from __future__ import annotations

import os
from pathlib import Path

from selenium import webdriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,900",
         # the fleet's private CA is not in the browser's store; TLS itself is still used
         "--ignore-certificate-errors"]
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)
MISSING = f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); deploy/setup.sh installs them"


def start(profile: Path) -> webdriver.Chrome:
    """A new browser with its own profile directory (Selenium Manager kept offline)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    os.environ["SE_OFFLINE"] = "true"
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
