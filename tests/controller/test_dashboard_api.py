"""The dashboard's HTTP API over real HTTPS: a real etcd, a real controller with mutual TLS and
real agents. Who may do what (tokens, certificates, anonymous), CSRF and origin checks, the
security headers, and that writes go through the same core, checks and audit as gRPC."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetvisor.agent.security.identity import from_pem
from fleetvisor.controller.dashboard.rows import PROC_FIELDS
from tests.support import free_port, wait_for

from .dashboard_harness import ADMIN, BOB, RITA, SCOPED, VIC, DashboardFleet, make_pki
from .fleet_harness import CONTROLLER, one_line_error


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def dash(fleet, pki) -> DashboardFleet:
    return DashboardFleet(fleet, pki)


def audit(dash: DashboardFleet) -> list[dict]:
    return dash.client(cert=ADMIN).rpc("ListAudit", {"limit": 0}).json()["entries"]


def test_token_login_sets_a_strict_cookie_and_writes_are_audited_as_the_identity(dash):
    url = dash.login_url(ADMIN)
    client = dash.client()
    answer = client.login(url)
    assert answer.status == 200, answer.body
    cookie = answer.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
        assert attribute in cookie, cookie
    me = client.whoami().json()
    assert (me["name"], me["role"], me["how"]) == (ADMIN, "operator", "token")
    assert me["may"] == {"control": True, "deploy": True, "read": True}

    before = dash.wait_running(client, "web-1", "app:app")
    done = client.rpc("Control", {"action": "RESTART", "patterns": ["web-1:app:app"], "wait": True})
    assert done.status == 200, done.body
    assert all(n["ok"] for n in done.json()["nodes"])
    wait_for(lambda: dash.pid(client, "web-1", "app:app") not in (0, before), 20, "a new pid")
    entry = [e for e in audit(dash) if e["action"] == "control.restart"][-1]
    assert entry["who"] == f"{ADMIN} (dashboard)" and entry["ok"]
    assert "#token" not in dash.ctl.log() and url.partition("#token=")[2] not in dash.ctl.log()
    login = [e for e in audit(dash) if e["action"] == "dashboard.login"]
    assert login and url.partition("#token=")[2] not in str(login)


def test_security_headers(dash):
    client = dash.logged_in(ADMIN)
    for path in ("/", "/api/whoami", "/static/app.js"):
        headers = client.request("GET", path).headers
        csp = headers["Content-Security-Policy"]
        for part in ("script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'",
                     "form-action 'self'"):
            assert part in csp, csp
        assert "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert client.request("GET", "/api/whoami").headers["Cache-Control"] == "no-store"
    conn = client._connection()
    conn.request("GET", "/api/events/status", headers={"Cookie": client.cookie})
    stream = conn.getresponse()
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert stream.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in stream.headers
    conn.close()
    missing = client.request("GET", "/nosuch")
    assert missing.status == 404 and missing.json()["error"]
    page = client.request("GET", "/").body.decode()
    assert "<script>" not in page and "style=" not in page and "<style" not in page


def test_writes_need_the_csrf_header_and_this_origin(dash):
    client = dash.logged_in(ADMIN)
    pid = dash.wait_running(client, "web-1", "app:app")
    for kwargs, word in (({"csrf": False}, "X-CSRF-Token"), ({"headers": {"X-CSRF-Token": "0" * 64}}, "X-CSRF-Token"),
                         ({"headers": {"Origin": "https://evil.example"}}, "origin"), ({"origin": False}, "origin")):
        refused = client.rpc("Control", {"action": "STOP", "patterns": ["web-1:app:app"]}, **kwargs)
        assert refused.status == 403, (kwargs, refused.body)
        assert word in refused.error
    assert dash.pid(client, "web-1", "app:app") == pid  # nothing was stopped
    # a state-changing request by GET is not served at all
    assert client.request("GET", "/api/rpc/Control").status == 405
    denied = [e for e in audit(dash) if e["action"] == "denied" and "dashboard" in e["detail"]]
    assert any(e["who"] == ADMIN for e in denied)


def test_a_viewer_reads_but_its_forged_write_is_refused_and_audited(dash):
    client = dash.logged_in(VIC)
    me = client.whoami().json()
    assert me["role"] == "viewer" and me["may"] == {"control": False, "deploy": False, "read": True}
    assert client.rpc("GetStatus").status == 200
    pid = dash.wait_running(client, "web-1", "app:app")
    forged = client.rpc("Control", {"action": "STOP", "patterns": ["web-1:app:app"]})
    assert forged.status == 403 and "viewer vic" in forged.error and "\n" not in forged.error
    assert dash.pid(client, "web-1", "app:app") == pid
    assert any(e["who"] == VIC and e["action"] == "denied" and "Control" in e["detail"] for e in audit(dash))


def test_forged_expired_revoked_and_missing_logins_are_refused(dash):
    nobody = dash.client()
    assert nobody.whoami().status == 401
    assert nobody.rpc("GetStatus").status == 401
    # forged: the claims changed (bob claims to be alice), or the signature is made up
    url = dash.login_url(BOB)
    body, _, signature = url.partition("#token=")[2].partition(".")
    assert dash.client().login(f"x#token={body}.{'A' * len(signature)}").status == 401
    refused = [e for e in audit(dash) if e["action"] == "denied" and "dashboard login" in e["detail"]]
    assert refused and refused[-1]["who"] == "unidentified caller" and body not in str(refused)
    assert dash.client().request("GET", "/api/whoami", headers={"Cookie": f"fleetvisor_session={body}.x"}).status == 401
    # expired
    short = dash.client()
    assert short.login(dash.login_url(BOB, ttl="2s")).status == 200
    wait_for(lambda: short.whoami().status == 401, 10, "the token to expire")
    assert "expired" in short.whoami().error
    # too long a TTL: one line, nothing minted
    refused = dash.fleetctl(BOB, "dashboard-login", "--ttl", "13h")
    assert refused.returncode != 0 and "12h" in one_line_error(refused)
    # revoked: the certificate's tokens die with it
    rita = dash.logged_in(RITA)
    assert rita.whoami().status == 200
    serial = from_pem((dash.pki / f"{RITA}.pem").read_bytes()).serial
    dash.wait_running(rita, "web-2", "talker:talker")
    asked: list[bool] = []

    def revoke_midway(events) -> bool:
        if events and not asked:  # a live view is open: the revocation must end it
            asked.append(True)
            revoked = dash.fleetctl(ADMIN, "certs", "revoke", serial)
            assert revoked.returncode == 0, revoked.stderr
        return False
    rita.sse("/api/events/tail?node=web-2&name=talker:talker", revoke_midway, timeout=20)
    assert asked
    wait_for(lambda: rita.whoami().status == 401, 15, "the revoked certificate's session to end")
    assert "revoked" in rita.whoami().error


def test_machines_may_not_log_in_and_certificates_identify_over_https(dash):
    refused = dash.fleetctl("web-1", "dashboard-login")
    assert refused.returncode != 0 and "agent web-1 may not" in one_line_error(refused)
    by_cert = dash.client(cert=BOB)
    me = by_cert.whoami().json()
    assert (me["name"], me["how"]) == (BOB, "certificate")
    assert by_cert.rpc("GetStatus").status == 200


STATENAME = PROC_FIELDS.index("statename")


def first_view(events: list[tuple[str, dict]]) -> dict | None:
    """The status stream's first view put together: its first message (summary, nodes) and the
    rows that follow it until none is left to come; None until then."""
    if not events:
        return None
    view = dict(events[0][1])
    view["procs"] = {}
    for _, message in events:
        view["procs"].update(message.get("procs", {}))
        if not message.get("more"):
            return view
    return None


def test_status_events_send_the_full_state_then_only_what_changed(dash):
    client = dash.logged_in(ADMIN)
    dash.wait_running(client, "web-1", "app:app")
    dash.wait_running(client, "web-2", "app:app")

    asked: list[bool] = []

    def restarted(events):
        if events and not asked:
            asked.append(True)
            client.rpc("Control", {"action": "RESTART", "patterns": ["web-2:app:app"], "wait": True})
        return any(not e["full"] and "web-2:app:app" in e.get("procs", {}) and
                   e["procs"]["web-2:app:app"][STATENAME] == "RUNNING" for _, e in events[2:])
    events = client.sse("/api/events/status", restarted)
    head, rows = events[0][1], events[1][1]
    # the summary and the nodes first, then the rows (here one message of them)
    assert head["full"] and "web-1" in head["nodes"] and "procs" not in head and head["more"] == 4
    assert head["nodes"]["web-1"]["processes"] == 2 and head["summary"]["processes"] == 4
    assert not rows["full"] and "web-1:crasher:crasher" in rows["procs"] and not rows.get("more")
    assert head["proc_fields"].index("statename") == STATENAME  # rows are lists, their columns named once
    first = head
    later = [e for _, e in events[2:] if "procs" in e]
    assert later and all(set(e["procs"]) <= {"web-2:app:app"} for e in later)
    summary = first["summary"]  # the controller's own (controller/summary.py), as fleetctl status shows it
    assert summary["nodes"] == 2 and {g["group"] for g in summary["groups"]} >= {"app", "crasher"}


def test_anonymous_read_only_with_the_flag(fleet):
    plain = DashboardFleet(fleet, None, extra=("--http-anonymous-read",), agents=1)
    visitor = plain.client()
    me = visitor.whoami().json()
    assert me["how"] == "anonymous" and me["may"]["control"] is False and me["csrf"] == ""
    assert visitor.rpc("GetStatus").status == 200
    plain.wait_running(visitor, "web-1", "app:app")
    refused = visitor.rpc("Control", {"action": "STOP", "patterns": ["web-1:app:app"]})
    assert refused.status == 403 and "anonymous" in refused.error
    # the loopback plaintext caller mints a token for itself, as it may do everything over gRPC
    local = plain.logged_in(None)
    assert local.whoami().json()["role"] == "local"


def test_without_the_flag_nobody_reads_anonymously(fleet):
    plain = DashboardFleet(fleet, None, agents=0)
    assert plain.client().whoami().status == 401
    assert plain.client().rpc("GetStatus").status == 401
    assert plain.client().request("GET", "/").status == 200  # the page itself, which then asks for a login


def test_plaintext_off_loopback_is_refused_at_startup(tmp_path, etcd):
    result = subprocess.run([*CONTROLLER, "--etcd", etcd.endpoint, "--listen", f"127.0.0.1:{free_port()}",
                             "--http-listen", f"0.0.0.0:{free_port()}", "--state-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "refusing to serve plaintext" in result.stderr and "--http-insecure" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_log_tail_streams_and_a_viewer_reads_it(dash):
    client = dash.logged_in(VIC)
    dash.wait_running(client, "web-2", "talker:talker")
    events = client.sse("/api/events/tail?node=web-2&name=talker:talker&stream=stdout",
                        lambda seen: any("hello-dashboard" in d.get("text", "") for _, d in seen))
    assert events[0][0] == "log"
    missing = client.sse("/api/events/tail?node=web-2&name=nosuch:nosuch", lambda seen: bool(seen))
    assert missing[0][0] == "error" and "\n" not in missing[0][1]["error"]


def test_live_views_are_bounded_per_identity(dash):
    client = dash.logged_in(VIC)
    import http.client

    held: list[http.client.HTTPConnection] = []
    try:
        for _ in range(8):
            conn = client._connection()
            conn.request("GET", "/api/events/status", headers={"Cookie": client.cookie})
            assert conn.getresponse().status == 200
            held.append(conn)
        over = client.request("GET", "/api/events/status")
        assert over.status == 429 and "live views" in over.error
    finally:
        for conn in held:
            conn.close()
    wait_for(lambda: client.request("GET", "/api/whoami").status == 200, 5, "the dashboard")


def test_config_history_diff_and_rollback_go_through_the_core(dash, tmp_path):
    viewer, admin = dash.logged_in(VIC), dash.logged_in(ADMIN)
    dash.wait_running(admin, "web-2", "app:app")
    conf = tmp_path / "extra.conf"
    for n, command in enumerate(("sleep 1000", "sleep 2000")):
        conf.write_text(f"[program:extra]\ncommand={command}\n")
        pushed = dash.fleetctl(ADMIN, "config", "push", str(conf), "--name", "extra", "--nodes", "web-2",
                               "-m", f"v{n + 1}")
        assert pushed.returncode == 0, pushed.stderr
    history = viewer.rpc("ConfigHistory", {"name": "extra"}).json()
    assert sorted(int(r["revision"]) for r in history["revisions"]) == [1, 2]
    texts = [viewer.rpc("GetConfigRevision", {"name": "extra", "revision": n}).json()["config_text"] for n in (1, 2)]
    assert "sleep 1000" in texts[0] and "sleep 2000" in texts[1]
    refused = viewer.rpc("RollbackConfig", {"name": "extra", "to_revision": 1})
    assert refused.status == 403
    done = admin.rpc("RollbackConfig", {"name": "extra", "to_revision": 1, "message": "back"})
    assert done.status == 200, done.body
    assert int(admin.rpc("ConfigHistory", {"name": "extra"}).json()["current_revision"]) == 3
    entry = [e for e in audit(dash) if e["action"] == "config.rollback"][-1]
    assert entry["who"] == f"{ADMIN} (dashboard)" and entry["ok"]
    bad = admin.rpc("RollbackConfig", {"name": "extra", "to_revision": "x"})
    assert bad.status == 400 and "\n" not in bad.error


def test_a_follower_says_where_the_leader_is_and_its_writes_name_it(dash):
    client = dash.client()
    client.base = dash.second_controller()
    assert client.login(dash.login_url(ADMIN)).status == 200  # ctl-1's token, accepted by ctl-2
    wait_for(lambda: client.whoami().json()["controller"]["leader_id"] == "ctl-1", 15, "ctl-2 to see the leader")
    me = client.whoami().json()["controller"]
    assert me["is_leader"] is False and me["leader_address"] == dash.ctl.address
    refused = client.rpc("Control", {"action": "RESTART", "patterns": ["web-1:app:app"]})
    assert refused.status == 409 and dash.ctl.address in refused.error


def test_an_operation_is_planned_started_paused_resumed_and_aborted_with_live_progress(dash):
    admin, viewer = dash.logged_in(ADMIN), dash.logged_in(VIC)
    for node in ("web-1", "web-2"):
        dash.wait_running(admin, node, "app:app")
    spec = {"kind": "ROLLING_RESTART", "group": "app", "batch": 1, "healthy_for_seconds": 60, "timeout_seconds": 120}
    plan = admin.rpc("StartOperation", {"spec": spec, "dry_run": True}).json()
    assert plan["id"] == "" and len(plan["batches"]) == 2
    assert admin.rpc("ListOperations", {"all": True}).json()["operations"] == []
    assert viewer.rpc("StartOperation", {"spec": spec}).status == 403
    op = admin.rpc("StartOperation", {"spec": spec, "message": "from the dashboard"}).json()
    assert op["author"] == f"{ADMIN} (dashboard)"

    def state(client=admin) -> str:
        return client.rpc("GetOperation", {"id": op["id"]}).json()["state"]
    assert viewer.rpc("PauseOperation", {"id": op["id"]}).status == 403
    assert admin.rpc("PauseOperation", {"id": op["id"], "reason": "look"}).status == 200
    wait_for(lambda: state() == "OP_PAUSED", 10, "the pause")
    assert admin.rpc("ResumeOperation", {"id": op["id"]}).status == 200
    wait_for(lambda: state() == "OP_RUNNING", 10, "the resume")

    asked: list[bool] = []

    def aborted(events) -> bool:
        if events and not asked:  # the stream shows the running operation first
            asked.append(True)
            assert admin.rpc("AbortOperation", {"id": op["id"], "reason": "enough"}).status == 200
        return bool(events) and events[-1][0] == "end"
    events = viewer.sse(f"/api/events/operation/{op['id']}", aborted)
    assert events[-2][1]["state"] == "OP_ABORTED" and events[-2][1]["reason"]
    actions = [e["action"] for e in audit(dash) if e["who"] == f"{ADMIN} (dashboard)"]
    assert {"ops.rolling-restart", "ops.pause", "ops.resume", "ops.abort"} <= set(actions)


CONTROL = PROC_FIELDS.index("control")


def test_rows_say_where_a_scoped_operator_may_control_and_the_server_agrees(dash):
    dash.scope_to_web1()
    admin = dash.logged_in(ADMIN)
    for node in ("web-1", "web-2"):
        dash.wait_running(admin, node, "app:app")
    sam = dash.logged_in(SCOPED)
    assert sam.whoami().json()["may"]["control"] is True  # somewhere: the rows say where

    def both_nodes(events) -> bool:
        return (view := first_view(events)) is not None and {"web-1:app:app", "web-2:app:app"} <= set(view["procs"])
    first = first_view(sam.sse("/api/events/status", both_nodes))
    assert first["nodes"]["web-1"]["control"] == "all" and first["nodes"]["web-2"]["control"] == "none"
    assert first["procs"]["web-1:app:app"][CONTROL] == 1 and first["procs"]["web-2:app:app"][CONTROL] == 0
    everywhere = first_view(admin.sse("/api/events/status", both_nodes))
    assert {row[CONTROL] for row in everywhere["procs"].values()} == {1}
    # the flags are the server's own check: a forged write where the row says no is refused
    pid = dash.pid(admin, "web-2", "app:app")
    forged = sam.rpc("Control", {"action": "STOP", "patterns": ["web-2:app:app"], "wait": True})
    assert forged.status == 403 and "sam" in forged.error and "\n" not in forged.error
    assert dash.pid(admin, "web-2", "app:app") == pid
    allowed = sam.rpc("Control", {"action": "RESTART", "patterns": ["web-1:app:app"], "wait": True})
    assert allowed.status == 200, allowed.body


def test_a_rotated_key_refuses_old_tokens_on_every_controller(dash):
    old_url = dash.login_url(BOB)
    here, there = dash.client(), dash.client()
    there.base = dash.second_controller()
    assert here.login(old_url).status == 200 and there.login(old_url).status == 200
    # only admins rotate; a refusal changes nothing
    refused = dash.fleetctl(VIC, "dashboard-rotate-key")
    assert refused.returncode != 0 and "viewer vic may not admin" in one_line_error(refused)
    assert there.whoami().status == 200
    opened: list[bool] = []

    def rotate_midway(events) -> bool:
        if events and not opened:  # a live view is open on ctl-2: the rotation must end it
            opened.append(True)
            rotated = dash.fleetctl(ADMIN, "-o", "json", "dashboard-rotate-key")
            assert rotated.returncode == 0, rotated.stderr
        return False
    ended = there.sse("/api/events/status", rotate_midway, timeout=30)
    assert opened and ended[-1][0] == "error" and "rotated" in ended[-1][1]["error"]
    for client in (here, there):
        wait_for(lambda c=client: c.whoami().status == 401, 15, "the old token to be refused")
    fresh = dash.client()
    fresh.base = there.base
    assert fresh.login(old_url).status == 401  # the old link cannot log in again either
    assert fresh.login(dash.login_url(BOB)).status == 200  # a new login works on both
    assert dash.logged_in(BOB).whoami().status == 200
    entries = dash.logged_in(ADMIN).rpc("ListAudit", {"limit": 0}).json()["entries"]
    assert any(e["action"] == "dashboard.rotate-key" and e["ok"] and e["who"].startswith(ADMIN) for e in entries)
