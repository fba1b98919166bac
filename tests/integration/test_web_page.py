"""The web page in a real browser: Debian's headless Chromium, driven by Selenium through
Debian's chromedriver. A click on the page must change the process (seen by XML-RPC and in
the main log) and the page must then show the new state and what happened.

Nothing is downloaded: the driver path is given, so Selenium Manager is never run, and the
browser is started with its background networking off and a new, empty profile.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.common.by import By

from benchmarks import chromium
from tests.support import free_port, wait_for

from .web_helpers import (LOG_TEXT, PASSWORD, PROGRAMS, USER, Web, rpc, state,
                          wait_all_running, web_config)

WAIT = 20.0  # seconds a page may take to show what a click did
WINDOW = "1280,800"

pytestmark = pytest.mark.skipif(not chromium.HAVE_CHROMIUM, reason=chromium.MISSING)

BROWSER_PROGRAMS = PROGRAMS + """
[program:echoer]
command=/bin/cat
startsecs=0
"""
RUNNING_AT_BOOT = ["sleeper", "talker", "worker:worker_0", "worker:worker_1", "echoer"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium.start(tmp_path_factory.mktemp("chromium-profile"), window=WINDOW)
    try:
        yield driver
    finally:
        driver.quit()


def _log_in(driver) -> None:
    """Send the agent's basic-auth credentials with every request of this browser."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                           {"headers": {"Authorization": f"Basic {token}"}})


def _log_out(driver) -> None:
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


@pytest.fixture
def agent(tmp_path, daemons, browser):
    port = free_port()
    daemon = daemons(web_config(tmp_path, port, programs=BROWSER_PROGRAMS))
    wait_for(Web(port).ready, 15, "the HTTP server")
    wait_all_running(port, RUNNING_AT_BOOT)
    _log_in(browser)
    browser.get(f"http://127.0.0.1:{port}/")
    return port, daemon, browser


def _until(driver, condition, what: str):
    return chromium.until(driver, condition, what, WAIT, poll=0.05)


def _row(driver, namespec: str):
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-process="{namespec}"]')


def _shown_state(driver, namespec: str) -> str:
    return _row(driver, namespec).find_element(By.CSS_SELECTOR, "span.state").text


def _message(driver) -> str:
    try:
        return driver.find_element(By.ID, "message").text
    except NoSuchElementException:
        return ""


def _click_action(driver, namespec: str, action: str) -> None:
    _row(driver, namespec).find_element(By.CSS_SELECTOR, f'button[value="{action}"]').click()


def _wait_message(driver, predicate, what: str) -> str:
    return _until(driver, lambda d: predicate(_message(d)) and _message(d), what)


def test_stop_and_start_a_process_by_clicking(agent):
    port, daemon, driver = agent
    assert _shown_state(driver, "sleeper") == "running"
    pid = rpc(port).supervisor.getProcessInfo("sleeper")["pid"]

    _click_action(driver, "sleeper", "stop")
    _wait_message(driver, lambda m: m == "Process sleeper stopped", "the stop message")
    assert _shown_state(driver, "sleeper") == "stopped"
    assert state(port, "sleeper") == "STOPPED"
    daemon.wait_line(r"stopped: sleeper \(terminated by SIGTERM\)")
    # the other processes were left alone, and the page offers start now, not stop
    assert _shown_state(driver, "talker") == "running"
    buttons = [b.get_attribute("value") for b in
               _row(driver, "sleeper").find_elements(By.TAG_NAME, "button")]
    assert buttons == ["start", "clearlog"]
    if os.environ.get("WEB_SCREENSHOT"):
        driver.save_screenshot(os.environ["WEB_SCREENSHOT"])

    _click_action(driver, "sleeper", "start")
    _wait_message(driver, lambda m: m == "Process sleeper started", "the start message")
    assert _shown_state(driver, "sleeper") == "running"
    info = rpc(port).supervisor.getProcessInfo("sleeper")
    assert info["statename"] == "RUNNING" and info["pid"] != pid
    daemon.wait_line(rf"spawned: 'sleeper' with pid {info['pid']}")
    assert f"pid {info['pid']}, uptime" in _row(driver, "sleeper").text


def test_restart_a_process_of_a_group(agent):
    port, daemon, driver = agent
    before = rpc(port).supervisor.getProcessInfo("worker:worker_1")["pid"]
    _click_action(driver, "worker:worker_1", "restart")
    _wait_message(driver, lambda m: m == "Process worker:worker_1 restarted", "the restart message")
    info = rpc(port).supervisor.getProcessInfo("worker:worker_1")
    assert info["statename"] == "RUNNING" and info["pid"] != before
    daemon.wait_line(r"stopped: worker_1 \(terminated by SIGTERM\)")


def test_stop_all_and_restart_all(agent):
    port, daemon, driver = agent
    names = [row.get_attribute("data-process")
             for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-process]")]
    assert len(names) == 6

    driver.find_element(By.CSS_SELECTOR, 'button[value="stopall"]').click()
    _wait_message(driver, lambda m: m.startswith("All stopped at "), "the stop-all message")
    assert {_shown_state(driver, n) for n in names} == {"stopped"}
    assert {i["statename"] for i in rpc(port).supervisor.getAllProcessInfo()} == {"STOPPED"}

    driver.find_element(By.CSS_SELECTOR, 'button[value="restartall"]').click()
    _wait_message(driver, lambda m: m.startswith("All restarted at "), "the restart-all message")
    assert {_shown_state(driver, n) for n in names} == {"running"}
    assert {i["statename"] for i in rpc(port).supervisor.getAllProcessInfo()} == {"RUNNING"}

    driver.find_element(By.CSS_SELECTOR, 'button[value="refresh"]').click()
    _wait_message(driver, lambda m: m.startswith("Page refreshed at "), "the refresh message")


def test_tail_view_refresh_and_clear_log(agent):
    port, _, driver = agent
    talker_log = rpc(port).supervisor.getProcessInfo("talker")["stdout_logfile"]
    wait_for(lambda: os.path.getsize(talker_log) > 0, 10, "talker's output in its log")
    # the name links to the tail view; the log's markup is shown as text, not obeyed
    _row(driver, "talker").find_element(By.LINK_TEXT, "talker").click()
    _until(driver, lambda d: d.find_element(By.ID, "log").text == LOG_TEXT, "talker's log text")
    assert "tail.html?processname=talker" in driver.current_url
    assert driver.find_elements(By.TAG_NAME, "script") == []

    # new output shows after a click on Refresh
    driver.get(f"http://127.0.0.1:{port}/tail.html?processname=echoer")
    assert driver.find_element(By.ID, "log").text == ""
    rpc(port).supervisor.sendProcessStdin("echoer", "hello from stdin\n")
    echoer_log = rpc(port).supervisor.getProcessInfo("echoer")["stdout_logfile"]
    wait_for(lambda: b"hello" in Path(echoer_log).read_bytes(), 10, "echoer's output in its log")
    driver.find_element(By.ID, "refresh").click()
    _until(driver, lambda d: d.find_element(By.ID, "log").text == "hello from stdin",
           "the refreshed tail")

    # clear the log from the list, and the tail view is empty again
    driver.find_element(By.LINK_TEXT, "← All processes").click()
    _click_action(driver, "echoer", "clearlog")
    _wait_message(driver, lambda m: m == "Log for echoer cleared", "the clear-log message")
    assert Path(echoer_log).read_bytes() == b""
    _row(driver, "echoer").find_element(By.LINK_TEXT, "echoer").click()
    _until(driver, lambda d: "processname=echoer" in d.current_url, "the tail view")
    assert driver.find_element(By.ID, "log").text == ""


def test_the_browser_gets_no_page_without_credentials(agent):
    port, _, driver = agent
    _log_out(driver)
    try:
        # A 401 with a Basic challenge; headless Chromium cannot ask for a password and
        # shows an empty page. (The exact answers are checked over plain HTTP.)
        driver.get(f"http://127.0.0.1:{port}/index.html?processname=sleeper&action=stop")
        assert "sleeper" not in driver.page_source
        assert driver.find_elements(By.CSS_SELECTOR, "tr[data-process]") == []
        assert state(port, "sleeper") == "RUNNING"
    finally:
        _log_in(driver)


def test_works_with_javascript_disabled(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port, programs=BROWSER_PROGRAMS))
    wait_for(Web(port).ready, 15, "the HTTP server")
    wait_all_running(port, RUNNING_AT_BOOT)
    driver = chromium.start(tmp_path / "profile", javascript=False, window=WINDOW)
    try:
        driver.get("data:text/html,<title>off</title><script>document.title='on'</script>")
        assert driver.title == "off"  # scripts really do not run in this browser
        _log_in(driver)
        driver.get(f"http://127.0.0.1:{port}/")
        _click_action(driver, "echoer", "stop")
        _wait_message(driver, lambda m: m == "Process echoer stopped", "the stop message")
        assert state(port, "echoer") == "STOPPED"
        assert _shown_state(driver, "echoer") == "stopped"
    finally:
        driver.quit()

