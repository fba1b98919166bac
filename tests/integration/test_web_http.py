"""The web page over plain HTTP, against a real agent: every action, the redirect-with-message
protocol supervisord's page uses, auth, the cross-site guard and HTML escaping."""

from __future__ import annotations

import html
import os
import re
from urllib.parse import quote

import pytest

from tests.support import free_port, wait_for

from .web_helpers import (LOG_TEXT, Web, rows, rpc, shown_message, state,
                          wait_all_running, wait_state, web_config)

RUNNING_AT_BOOT = ["sleeper", "talker", "worker:worker_0", "worker:worker_1"]


@pytest.fixture
def agent(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port))
    web = Web(port)
    wait_for(web.ready, 15, "the HTTP server")
    wait_all_running(port, RUNNING_AT_BOOT)
    return port, web


def act(web: Web, query: str) -> str:
    """GET an action URL as supervisord's links do; the message it redirects with."""
    reply = web.get(f"/index.html?{query}")
    assert reply.status == 303, reply.text
    assert reply.location is not None and reply.location.startswith("./?message=")
    assert reply.message is not None
    return reply.message


# -- the list ----------------------------------------------------------------------------------

def test_page_lists_every_process_with_state_description_and_tail_link(agent):
    port, web = agent
    for path in ("/", "/index.html"):
        reply = web.get(path)
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/html")
        assert reply.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
        assert rows(reply.text) == {"idle": "STOPPED", "sleeper": "RUNNING", "talker": "RUNNING",
                                    "worker:worker_0": "RUNNING", "worker:worker_1": "RUNNING"}
    page = web.get("/").text
    pid = rpc(port).supervisor.getProcessInfo("sleeper")["pid"]
    assert re.search(rf'<td class="desc">pid {pid}, uptime 0:\d\d:\d\d</td>', page)
    assert '<td class="desc">Not started</td>' in page  # idle
    assert '<a href="tail.html?processname=worker%3Aworker_0">worker:worker_0</a>' in page
    # listed by group, then name, as supervisord lists them
    assert list(rows(page)) == ["idle", "sleeper", "talker", "worker:worker_0", "worker:worker_1"]
    # a running process offers stop and restart, a stopped one start; both clear log
    running = _row_html(page, "sleeper")
    assert 'value="stop"' in running and 'value="restart"' in running and 'value="start"' not in running
    stopped = _row_html(page, "idle")
    assert 'value="start"' in stopped and 'value="stop"' not in stopped
    assert 'value="clearlog"' in running and 'value="clearlog"' in stopped
    assert 'href="logtail/sleeper"' in running and 'href="logtail/sleeper/stderr"' in running


def _row_html(page: str, namespec: str) -> str:
    match = re.search(rf'<tr data-process="{re.escape(html.escape(namespec))}".*?</tr>', page)
    assert match, f"no row for {namespec}"
    return match.group(0)


def test_no_programs(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port, programs=""))
    web = Web(port)
    wait_for(web.ready, 15, "the HTTP server")
    page = web.get("/").text
    assert rows(page) == {}
    assert "No programs are configured." in page


def test_ok_html(agent):
    _, web = agent
    reply = web.get("/ok.html")
    assert (reply.status, reply.text) == (200, "OK")


# -- per-process actions -----------------------------------------------------------------------

def test_stop_then_start(agent):
    port, web = agent
    assert act(web, "processname=sleeper&action=stop") == "Process sleeper stopped"
    assert state(port, "sleeper") == "STOPPED"  # the answer came after the process stopped
    page = web.get("/?message=" + quote("Process sleeper stopped")).text
    assert rows(page)["sleeper"] == "STOPPED"
    assert shown_message(page) == "Process sleeper stopped"

    assert act(web, "processname=sleeper&action=start") == "Process sleeper started"
    assert state(port, "sleeper") == "RUNNING"


def test_actions_by_form_post(agent):
    port, web = agent
    reply = web.post("/index.html", {"processname": "worker:worker_1", "action": "stop"})
    assert (reply.status, reply.message) == (303, "Process worker:worker_1 stopped")
    assert state(port, "worker:worker_1") == "STOPPED"
    assert state(port, "worker:worker_0") == "RUNNING"
    reply = web.post("/", {"processname": "worker:worker_1", "action": "start"})
    assert (reply.status, reply.message) == (303, "Process worker:worker_1 started")
    assert state(port, "worker:worker_1") == "RUNNING"


def test_restart_gives_a_new_pid(agent):
    port, web = agent
    before = rpc(port).supervisor.getProcessInfo("sleeper")["pid"]
    assert act(web, "processname=sleeper&action=restart") == "Process sleeper restarted"
    info = rpc(port).supervisor.getProcessInfo("sleeper")
    assert info["statename"] == "RUNNING" and info["pid"] != before
    # restarting a stopped process just starts it
    assert act(web, "processname=idle&action=restart") == "Process idle restarted"
    assert state(port, "idle") == "RUNNING"


def test_clear_log(agent):
    port, web = agent
    path = rpc(port).supervisor.getProcessInfo("talker")["stdout_logfile"]
    wait_for(lambda: os.path.getsize(path) > 0, 10, "talker's output in its log")
    assert act(web, "processname=talker&action=clearlog") == "Log for talker cleared"
    assert os.path.getsize(path) == 0
    assert state(port, "talker") == "RUNNING"


def test_action_errors_come_back_as_messages(agent):
    port, web = agent
    assert act(web, "processname=sleeper&action=start") == "ERROR: Process sleeper: already started"
    assert act(web, "processname=idle&action=stop") == "ERROR: Process idle: not running"
    assert act(web, "processname=nosuch&action=stop") == "No such process named nosuch"
    assert act(web, "processname=worker:*&action=stop") == "No such process named worker:*"
    assert state(port, "worker:worker_0") == "RUNNING"
    page = web.get("/?message=" + quote("ERROR: Process idle: not running")).text
    assert '<p class="msg error" role="status" id="message">' in page


def test_a_failing_start_says_why(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port, programs="""
        [program:quitter]
        command=/bin/sh -c 'exit 3'
        autostart=false
        startsecs=5
        startretries=0
        """))
    web = Web(port)
    wait_for(web.ready, 15, "the HTTP server")
    # Exiting before startsecs leaves a spawn error ("Exited too quickly"), as in supervisord.
    assert act(web, "processname=quitter&action=start") == "ERROR: Process quitter: spawn error"
    assert state(port, "quitter") == "FATAL"
    assert rows(web.get("/").text)["quitter"] == "FATAL"


def test_bad_requests(agent):
    _, web = agent
    assert web.get("/index.html?action=explode").status == 400
    assert web.get("/index.html?action=stop").status == 400  # which process?
    assert web.get("/index.html?processname=sleeper").status == 200  # no action: just the page


# -- global actions ----------------------------------------------------------------------------

def test_refresh(agent):
    _, web = agent
    assert act(web, "action=refresh").startswith("Page refreshed at ")


def test_stop_all_and_restart_all(agent):
    port, web = agent
    message = act(web, "action=stopall")
    assert message.startswith("All stopped at "), message
    states = {i["name"]: i["statename"] for i in rpc(port).supervisor.getAllProcessInfo()}
    assert set(states.values()) == {"STOPPED"}
    assert set(rows(web.get("/").text).values()) == {"STOPPED"}

    message = act(web, "action=restartall")
    assert message.startswith("All restarted at "), message
    states = {i["name"]: i["statename"] for i in rpc(port).supervisor.getAllProcessInfo()}
    assert set(states.values()) == {"RUNNING"}  # idle too: restart all starts everything


def test_restart_all_changes_every_pid(agent):
    port, web = agent
    before = {i["name"]: i["pid"] for i in rpc(port).supervisor.getAllProcessInfo() if i["pid"]}
    assert act(web, "action=restartall").startswith("All restarted at ")
    after = {i["name"]: i["pid"] for i in rpc(port).supervisor.getAllProcessInfo()}
    assert all(after[name] != pid for name, pid in before.items())


# -- tail view ---------------------------------------------------------------------------------

def test_tail_shows_the_end_of_the_log_escaped(agent):
    port, web = agent
    path = rpc(port).supervisor.getProcessInfo("talker")["stdout_logfile"]
    wait_for(lambda: os.path.getsize(path) > 0, 10, "talker's output in its log")
    reply = web.get("/tail.html?processname=talker")
    assert reply.status == 200
    assert f'<pre id="log">{html.escape(LOG_TEXT)}\n</pre>' in reply.text
    assert "<script>" not in reply.text
    assert 'id="refresh" href="tail.html?processname=talker&amp;limit=1024"' in reply.text
    stderr = web.get("/tail.html?processname=talker&channel=stderr").text
    assert '<pre id="log">oops\n</pre>' in stderr


def test_tail_limit_reads_more_but_never_less_than_1024(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port, programs="""
        [program:chatty]
        command=/bin/sh -c 'i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; exec sleep 1000'
        startsecs=0
        """))
    web = Web(port)
    wait_for(web.ready, 15, "the HTTP server")
    wait_state(port, "chatty", "RUNNING")
    path = rpc(port).supervisor.getProcessInfo("chatty")["stdout_logfile"]
    size = wait_for(lambda: os.path.getsize(path) if b"line 499\n" in open(path, "rb").read() else 0,
                    10, "all of chatty's output")

    def shown(query: str) -> str:
        text = re.search(r'<pre id="log">(.*?)</pre>', web.get(f"/tail.html?{query}").text, re.S)
        assert text
        return html.unescape(text.group(1))

    assert len(shown("processname=chatty")) == 1024
    assert len(shown("processname=chatty&limit=10")) == 1024
    assert len(shown("processname=chatty&limit=abc")) == 1024
    assert len(shown("processname=chatty&limit=2000")) == 2000
    assert shown("processname=chatty&limit=1000000") == open(path).read()
    assert size > 2000
    assert shown("processname=chatty").endswith("line 499\n")


def test_tail_without_a_process(agent):
    _, web = agent
    missing = web.get("/tail.html")
    assert missing.status == 400 and "No process name found" in missing.text
    unknown = web.get("/tail.html?processname=nosuch")
    assert unknown.status == 404 and "No such process named nosuch" in unknown.text


def test_tail_of_a_process_without_a_log_file(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port, programs="""
        [program:quiet]
        command=/bin/sleep 1000
        stdout_logfile=NONE
        startsecs=0
        """))
    web = Web(port)
    wait_for(web.ready, 15, "the HTTP server")
    assert "No file for quiet" in web.get("/tail.html?processname=quiet").text


# -- escaping ----------------------------------------------------------------------------------

ODD = 'a<b>&"c\''


def test_names_and_messages_are_escaped(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port, programs=f"""
        [program:{ODD}]
        command=/bin/sleep 1000
        startsecs=0
        """))
    web = Web(port)
    wait_for(web.ready, 15, "the HTTP server")
    wait_state(port, ODD, "RUNNING")
    page = web.get("/").text
    assert "<b>" not in page
    assert rows(page) == {ODD: "RUNNING"}
    quoted = quote(ODD, safe="")
    assert f'<a href="tail.html?processname={html.escape(quoted)}">{html.escape(ODD)}</a>' in page
    assert f'<input type="hidden" name="processname" value="{html.escape(ODD)}">' in page

    # the page's own form round-trips the odd name
    reply = web.post("/index.html", {"processname": ODD, "action": "stop"})
    assert reply.message == f"Process {ODD} stopped"
    assert state(port, ODD) == "STOPPED"
    # the message the redirect carries is shown as text, never as markup
    shown = web.get(reply.location[1:]).text
    assert shown_message(shown) == f"Process {ODD} stopped"
    assert "<b>" not in shown
    evil = web.get("/?message=" + quote("<img src=x onerror=alert(1)>")).text
    assert "<img" not in evil and "&lt;img src=x onerror=alert(1)&gt;" in evil
    # and the tail view's title and heading
    tail = web.get(f"/tail.html?processname={quoted}").text
    assert "<b>" not in tail and f"<strong>{html.escape(ODD)}</strong>" in tail


# -- auth and the cross-site guard -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/index.html", "/index.html?processname=sleeper&action=stop",
                                  "/tail.html?processname=talker", "/ok.html"])
def test_every_page_needs_credentials(agent, path):
    port, web = agent
    for auth in (None, ("admin", "wrong"), ("nobody", "s3cret")):
        reply = web.get(path, auth=auth)
        assert reply.status == 401, (path, auth)
        assert reply.headers["WWW-Authenticate"].startswith("Basic")
        assert "sleeper" not in reply.text and "<pre" not in reply.text
    reply = web.post("/index.html", {"processname": "sleeper", "action": "stop"}, auth=None)
    assert reply.status == 401
    assert state(port, "sleeper") == "RUNNING"


def test_without_auth_configured_the_page_is_open(tmp_path, daemons):
    port = free_port()
    daemons(web_config(tmp_path, port, programs="", auth=False))
    web = Web(port, auth=None)
    wait_for(web.ready, 15, "the HTTP server")
    assert web.get("/").status == 200


def test_actions_from_another_site_are_refused(agent):
    port, web = agent
    for headers in ({"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://evil.example"},
                    {"Origin": "null"}):
        assert web.get("/index.html?action=stopall", headers=headers).status == 403, headers
        reply = web.post("/index.html", {"processname": "sleeper", "action": "stop"}, headers=headers)
        assert reply.status == 403, headers
    assert state(port, "sleeper") == "RUNNING"
    # viewing is fine from anywhere (a link from a dashboard), acting from the page itself too
    assert web.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status == 200
    same = {"Sec-Fetch-Site": "same-origin", "Origin": f"http://127.0.0.1:{port}"}
    reply = web.post("/index.html", {"processname": "sleeper", "action": "stop"}, headers=same)
    assert reply.message == "Process sleeper stopped"
    reply = web.post("/index.html", {"processname": "sleeper", "action": "start"},
                     headers={"Origin": f"http://127.0.0.1:{port}"})
    assert reply.message == "Process sleeper started"
