"""The dashboard in a real browser: Debian's headless Chromium through Selenium and Debian's
chromedriver (as tests/integration/test_web_page.py), against a real etcd, a real controller
serving HTTPS with the fleet's certificate, and real agents. Logins are the links
`fleetctl dashboard-login` prints. Every wait has a deadline; nothing sleeps and hopes.

FLEETVISOR_SCREENSHOT=path.png saves the overview as the browser shows it (README's picture).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import chromium
from selenium.webdriver.common.by import By

from .dashboard_harness import ADMIN, SCOPED, VIC, DashboardFleet, make_pki

WAIT = 30.0

pytestmark = pytest.mark.skipif(not chromium.HAVE_CHROMIUM, reason=chromium.MISSING)


@pytest.fixture
def browser(tmp_path_factory):
    driver = chromium.start(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def dash(fleet, tmp_path: Path) -> DashboardFleet:
    return DashboardFleet(fleet, make_pki(tmp_path / "pki"))


def until(driver, condition, what: str):
    return chromium.until(driver, condition, what, WAIT)


def open_as(driver, dash: DashboardFleet, user: str, page: str = "") -> None:
    driver.get(dash.login_url(user))
    until(driver, lambda d: user in d.find_element(By.ID, "who").text, f"the page to show {user} logged in")
    assert "token" not in driver.current_url  # the fragment is gone from the address bar
    if page:
        driver.get(f"{dash.base}/#/{page}")


def row(driver, spec: str):
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-process="{spec}"]')


def fetch(driver, path: str, body: dict, csrf: bool = True) -> dict:
    """A request made by script in the page, as a forged one would be: the status and answer."""
    return driver.execute_async_script("""
        const [path, body, csrf, done] = arguments;
        const me = await (await fetch('/api/whoami')).json();
        const headers = {'Content-Type': 'application/json'};
        if (csrf) headers['X-CSRF-Token'] = me.csrf;
        const r = await fetch(path, {method: 'POST', headers, body: JSON.stringify(body)});
        done({status: r.status, body: await r.json()});
    """, path, body, csrf)


def test_overview_shows_the_fatal_process_under_problems(browser, dash):
    open_as(browser, dash, ADMIN)
    problem = until(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-problem="web-1:crasher"]'),
                    "the crasher under problems")
    assert "FATAL" in problem.text
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-node]")) == 2, "both nodes")
    node = browser.find_element(By.CSS_SELECTOR, 'tr[data-node="web-1"]')
    assert "role=web" in node.text
    groups = browser.find_element(By.ID, "groups").text
    assert "crasher" in groups and "app" in groups
    assert browser.find_element(By.ID, "banner").get_attribute("hidden") is not None  # the leader, etcd fine
    if path := os.environ.get("FLEETVISOR_SCREENSHOT"):
        browser.save_screenshot(path)


def test_a_restart_button_restarts_the_process(browser, dash):
    client = dash.logged_in(ADMIN)
    before = dash.wait_running(client, "web-1", "app:app")
    open_as(browser, dash, ADMIN, "node/web-1")
    until(browser, lambda d: row(d, "web-1:app:app").find_element(By.CSS_SELECTOR, "td.pid").text == str(before),
          "the row with its pid")
    row(browser, "web-1:app:app").find_element(By.CSS_SELECTOR, 'button[data-action="restart"]').click()
    def pid_shown(d) -> str:
        return row(d, "web-1:app:app").find_element(By.CSS_SELECTOR, "td.pid").text
    until(browser, lambda d: pid_shown(d) not in ("", str(before)), "a new pid on the page")
    after = dash.wait_running(client, "web-1", "app:app")
    assert after != before
    assert os.path.exists(f"/proc/{after}")  # the agent's new child, on this host
    entries = client.rpc("ListAudit", {"limit": 0}).json()["entries"]
    assert any(e["who"] == f"{ADMIN} (dashboard)" and e["action"] == "control.restart" for e in entries)


def test_a_rolling_restart_from_the_page_completes_with_live_progress(browser, dash):
    client = dash.logged_in(ADMIN)
    pids = {node: dash.wait_running(client, node, "app:app") for node in ("web-1", "web-2")}
    open_as(browser, dash, ADMIN, "group/app")
    until(browser, lambda d: d.find_element(By.ID, "rr-plan"), "the rolling restart form")
    browser.find_element(By.ID, "rr-healthy").clear()
    browser.find_element(By.ID, "rr-healthy").send_keys("1")
    browser.find_element(By.ID, "rr-plan").click()
    plan = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".plan-batch"), "the plan")
    assert len(plan) == 2 and "web-1" in plan[0].text + plan[1].text
    assert client.rpc("ListOperations", {"all": True}).json().get("operations", []) == []  # a plan starts nothing
    browser.find_element(By.ID, "rr-confirm").click()
    until(browser, lambda d: "#/op/" in d.current_url, "the operation's page")
    seen = set()

    def finished(d) -> bool:
        seen.add(d.find_element(By.ID, "op-state").text)
        return d.find_element(By.ID, "op-state").text == "OP_SUCCEEDED"
    until(browser, finished, "the rolling restart to succeed")
    assert "OP_RUNNING" in seen  # progress was shown while it ran, not only the end
    steps = browser.find_elements(By.CSS_SELECTOR, ".step")
    assert len(steps) == 2 and all("DONE" in s.text for s in steps)
    for node, pid in pids.items():
        assert dash.wait_running(client, node, "app:app") != pid
    op_id = browser.current_url.rpartition("/")[2]
    browser.get(f"{dash.base}/#/ops")
    listed = until(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-op="{op_id}"]'), "the operations list")
    assert "OP_SUCCEEDED" in listed.text and f"{ADMIN} (dashboard)" in listed.text


def test_a_viewer_sees_no_write_controls_and_its_forged_write_is_refused(browser, dash):
    client = dash.logged_in(ADMIN)
    pid = dash.wait_running(client, "web-1", "app:app")
    open_as(browser, dash, VIC, "node/web-1")
    until(browser, lambda d: row(d, "web-1:app:app"), "the process row")
    assert browser.find_elements(By.CSS_SELECTOR, "button.write") == []
    browser.get(f"{dash.base}/#/group/app")
    until(browser, lambda d: row(d, "web-1:app:app"), "the group's rows")
    assert browser.find_elements(By.ID, "rr-form") == []
    assert browser.find_elements(By.CSS_SELECTOR, "button.write") == []
    forged = fetch(browser, "/api/rpc/Control", {"action": "STOP", "patterns": ["web-1:app:app"]})
    assert forged["status"] == 403 and "viewer vic" in forged["body"]["error"]
    assert dash.pid(client, "web-1", "app:app") == pid


def test_a_scoped_operator_sees_controls_only_where_the_server_allows_them(browser, dash):
    dash.scope_to_web1()  # control on node web-1 only
    client = dash.logged_in(ADMIN)
    pids = {node: dash.wait_running(client, node, "app:app") for node in ("web-1", "web-2")}
    open_as(browser, dash, SCOPED, "node/web-1")
    until(browser, lambda d: row(d, "web-1:app:app").find_elements(By.CSS_SELECTOR, 'button[data-action="restart"]'),
          "controls on the node it may control")
    browser.get(f"{dash.base}/#/node/web-2")
    until(browser, lambda d: row(d, "web-2:app:app").find_element(By.CSS_SELECTOR, "td.pid").text, "the other node")
    assert browser.find_elements(By.CSS_SELECTOR, "button.write") == []
    browser.get(f"{dash.base}/#/group/app")
    until(browser, lambda d: row(d, "web-2:app:app") and row(d, "web-1:app:app"), "the group on both nodes")
    assert row(browser, "web-1:app:app").find_elements(By.CSS_SELECTOR, "button.write")
    assert row(browser, "web-2:app:app").find_elements(By.CSS_SELECTOR, "button.write") == []
    assert "everywhere" not in browser.find_element(By.ID, "group-actions").text  # not all of the group is its
    forged = fetch(browser, "/api/rpc/Control", {"action": "STOP", "patterns": ["web-2:app:app"]})
    assert forged["status"] == 403 and SCOPED in forged["body"]["error"]
    assert dash.pid(client, "web-2", "app:app") == pids["web-2"]


def test_a_write_without_the_csrf_token_is_refused(browser, dash):
    client = dash.logged_in(ADMIN)
    pid = dash.wait_running(client, "web-1", "app:app")
    open_as(browser, dash, ADMIN)
    refused = fetch(browser, "/api/rpc/Control", {"action": "STOP", "patterns": ["web-1:app:app"]}, csrf=False)
    assert refused["status"] == 403 and "X-CSRF-Token" in refused["body"]["error"]
    assert dash.pid(client, "web-1", "app:app") == pid


def test_config_revisions_diff_side_by_side_and_roll_back_with_confirmation(browser, dash, tmp_path):
    client = dash.logged_in(ADMIN)
    dash.wait_running(client, "web-2", "app:app")
    conf = tmp_path / "extra.conf"
    for n, command in enumerate(("sleep 1000", "sleep 2000")):
        conf.write_text(f"[program:extra]\ncommand={command}\n")
        pushed = dash.fleetctl(ADMIN, "config", "push", str(conf), "--name", "extra", "--nodes", "web-2", "-m", f"v{n}")
        assert pushed.returncode == 0, pushed.stderr
    open_as(browser, dash, ADMIN, "config/extra")
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr[data-revision]")) == 2, "both revisions")
    browser.find_element(By.XPATH, "//button[text()='diff']").click()
    removed = until(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".diff span.del"), "the diff")
    assert "sleep 1000" in removed.text
    assert "sleep 2000" in browser.find_element(By.CSS_SELECTOR, ".diff span.add").text
    browser.find_element(By.CSS_SELECTOR, 'tr[data-revision="1"] button.write').click()
    until(browser, lambda d: d.switch_to.alert, "the confirmation").accept()
    until(browser, lambda d: "rolled back: revision 3" in d.find_element(By.ID, "message").text, "the rollback")
    assert int(client.rpc("ConfigHistory", {"name": "extra"}).json()["current_revision"]) == 3
    browser.get(f"{dash.base}/#/audit")
    until(browser, lambda d: "config.rollback" in d.find_element(By.ID, "view").text, "the audit entry")
    assert f"{ADMIN} (dashboard)" in browser.find_element(By.ID, "view").text


def test_banners_for_a_follower_and_for_lost_etcd(browser, dash):
    other = dash.second_controller()
    token = dash.login_url(ADMIN).partition("#token=")[2]
    browser.get(f"{other}/#token={token}")  # ctl-1's token, on ctl-2's dashboard
    banner = until(browser, lambda d: d.find_element(By.ID, "banner") if "follows" in
                   d.find_element(By.ID, "banner").text else None, "the follower banner")
    assert "ctl-1" in banner.text and dash.ctl.address in banner.text
    open_as(browser, dash, ADMIN)
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-node]"), "the leader's overview")
    dash.fleet.etcd.kill()
    until(browser, lambda d: "cannot reach etcd" in d.find_element(By.ID, "banner").text, "the etcd banner")


def test_anonymous_visitors_read_without_controls_and_follow_a_log(browser, fleet):
    plain = DashboardFleet(fleet, None, extra=("--http-anonymous-read",))
    plain.wait_running(plain.client(), "web-2", "talker:talker")
    browser.get(f"{plain.base}/#/node/web-2")
    until(browser, lambda d: "read only" in d.find_element(By.ID, "who").text, "the anonymous visitor")
    until(browser, lambda d: row(d, "web-2:talker:talker"), "the node's processes")
    assert browser.find_elements(By.CSS_SELECTOR, "button.write") == []
    row(browser, "web-2:talker:talker").find_element(By.LINK_TEXT, "tail").click()
    until(browser, lambda d: "hello-dashboard" in d.find_element(By.ID, "tail").text, "the log in the page")
    forged = fetch(browser, "/api/rpc/Control", {"action": "STOP", "patterns": ["web-2:talker:talker"]}, csrf=False)
    assert forged["status"] == 403 and "anonymous" in forged["body"]["error"]
