"""The web page: supervisord's status page at / and its tail view, rendered on the server.

The facts are supervisord 4.3's, so bookmarks and scripts keep working:

- ``/`` and ``/index.html`` list every process; ``?processname=x&action=start|stop|restart|
  clearlog`` and ``?action=refresh|stopall|restartall`` act, by GET or by a form POST, and
  answer with a redirect back to ``/?message=...`` that says what happened ("Process x
  started"), so reloading the page never repeats an action;
- ``/tail.html?processname=x[&limit=N]`` shows at least the last 1024 bytes of x's stdout
  (``&channel=stderr`` for stderr is ours);
- ``/ok.html`` answers ``OK`` (load balancers and health checks poll it).

Where we differ on purpose: the redirect is a 303 (supervisord sends a 301, which browsers
may cache), an unknown action is a 400 rather than a 500, failures read "ERROR: Process x:
<reason>" for every action, and stop all / restart all name the processes that failed.

Actions wait like the XML-RPC calls do (a start returns once the process is RUNNING),
because they are the same functions in `operations`; restart means there what it means on
every face (stop, then start), and restart all restarts every process. The page is plain
HTML with a little inline CSS and no script, so it works with JavaScript disabled; every
value that comes from a config, a log or the URL goes through `html.escape`.

Credentials are the server's: these routes sit behind the same basic auth as /RPC2.
Browsers send cached basic-auth credentials with any request, also one another site makes
them send, so an action a browser says came from another site is refused (403), and the
page may not be framed. Scripts (curl, wget) send no such headers and are not affected.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from aiohttp import web

from .. import operations
from ..caller import Caller
from ..faults import Fault, FaultError
from ..health import Health, Verdict
from ..operations import AgentInfo, ProcessInfo, ProcessResult, make_namespec
from ..states import ProcessState, SupervisorState

if TYPE_CHECKING:
    from ..supervisor import Supervisor

TAIL_MIN = 1024  # the tail view shows at least this much, as supervisord
TAIL_MAX = 1024 * 1024  # and at most this much, so one URL cannot read a whole 50 MB log

PROCESS_ACTIONS = ("start", "stop", "restart", "clearlog")
GLOBAL_ACTIONS = ("refresh", "stopall", "restartall")

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # Nothing but the page itself: no scripts at all, no framing (clickjacking), forms
    # only back to this server.
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}

# Fault -> the short reason shown after "ERROR: Process x: ".
_REASONS = {
    Fault.NO_FILE: "no such file",
    Fault.NOT_EXECUTABLE: "file not executable",
    Fault.ALREADY_STARTED: "already started",
    Fault.SPAWN_ERROR: "spawn error",
    Fault.ABNORMAL_TERMINATION: "abnormal termination",
    Fault.NOT_RUNNING: "not running",
    Fault.SHUTDOWN_STATE: "supervisor is shutting down",
}

_STATE_CLASS = {
    ProcessState.RUNNING: "ok",
    ProcessState.STARTING: "busy",
    ProcessState.STOPPING: "busy",
    ProcessState.BACKOFF: "bad",
    ProcessState.FATAL: "bad",
    ProcessState.UNKNOWN: "bad",
}

_STYLE = """
:root{--fg:#1d2330;--mute:#5f6b7a;--line:#dde2ea;--bg:#f5f7fa;--accent:#2458c6}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{background:#1d2330;color:#fff;padding:.8rem 1.5rem;
  display:flex;gap:1rem;align-items:baseline;flex-wrap:wrap}
header h1{font-size:1.1rem;margin:0;font-weight:600}
header h1 a{color:inherit}
header span{color:#aeb8c8;font-size:.85rem}
main{max-width:72rem;margin:0 auto;padding:1.2rem 1.5rem}
a{color:var(--accent);text-decoration:none}
a:hover{text-decoration:underline}
.msg{margin:0 0 1rem;padding:.55rem .8rem;border-radius:4px;
  background:#e6f4ea;border:1px solid #b7dfc3}
.msg.error{background:#fdecec;border-color:#f3c0c0}
.bar{display:flex;gap:.5rem;margin:0 0 1rem;flex-wrap:wrap;align-items:center}
.bar .fill{flex:1}
.bar a{font-size:.9rem}
button{font:inherit;font-size:.85rem;padding:.2rem .65rem;cursor:pointer;
  border:1px solid #c3cad6;border-radius:4px;background:#fff;color:var(--fg)}
button:hover{border-color:var(--accent);color:var(--accent)}
button.danger:hover{border-color:#b3261e;color:#b3261e}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid var(--line)}
th,td{text-align:left;padding:.5rem .75rem;border-bottom:1px solid var(--line)}
th{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;
  color:var(--mute);background:#fafbfc}
tbody tr:last-child td{border-bottom:0}
td.desc{color:var(--mute)}
td.name a{font-weight:600}
td.actions form{display:flex;gap:.35rem;flex-wrap:wrap;align-items:center;margin:0}
td.actions a{font-size:.8rem;margin-left:.25rem}
.state{display:inline-block;min-width:5.5rem;text-align:center;padding:.1rem .5rem;
  border-radius:999px;font-size:.75rem;font-weight:600;background:#eceff3;color:#4a5565}
.state.ok{background:#dff3e4;color:#17692f}
.state.bad{background:#fbe1e0;color:#a1221b}
.state.busy{background:#fff1d6;color:#8a5a00}
.empty{padding:2rem;text-align:center;color:var(--mute);
  background:#fff;border:1px solid var(--line)}
pre{margin:0;padding:.8rem 1rem;background:#fff;border:1px solid var(--line);border-radius:6px;
  overflow:auto;white-space:pre-wrap;word-break:break-all;
  font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
footer{color:var(--mute);font-size:.8rem;padding:1rem 1.5rem;text-align:center}
"""


def install(app: web.Application, core: Supervisor) -> None:
    """Add the page's routes to one HTTP server's application (behind its auth)."""
    page = WebPage(core)
    for path in ("/", "/index.html"):
        app.router.add_route("GET", path, page.status)
        app.router.add_route("POST", path, page.status)
    app.router.add_route("GET", "/tail.html", page.tail)
    app.router.add_route("POST", "/tail.html", page.tail)
    app.router.add_route("GET", "/ok.html", _ok)
    app.router.add_route("POST", "/ok.html", _ok)


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="OK", content_type="text/plain")


class WebPage:
    """The page's handlers for one core; every HTTP server's application shares the facts."""

    def __init__(self, core: Supervisor) -> None:
        self.core = core

    # -- the status page -------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        action = form.get("action")
        if action:
            if _cross_site(request):
                return _refused()
            if action not in GLOBAL_ACTIONS and action not in PROCESS_ACTIONS:
                return _bad_request(f"unknown action {action!r}")
            namespec = form.get("processname", "")
            if action in PROCESS_ACTIONS and not namespec:
                return _bad_request(f"action {action!r} needs a processname")
            message = await self.act(_caller(request), action, namespec)
            # Back to the list with the outcome; a reload shows it again but acts no more.
            # Relative, so the page also works behind a proxy that mounts it under a prefix.
            raise web.HTTPSeeOther(f"./?message={quote(message, safe='')}", headers=_HEADERS)
        return _html(self.render_status(_caller(request), form.get("message")))

    async def act(self, caller: Caller, action: str, namespec: str) -> str:
        """Do what the page asked; the message to show (success or the reason it failed)."""
        core = self.core
        if action == "refresh":
            return f"Page refreshed at {time.ctime()}"
        if action == "stopall":
            return _all_message("stopped", await _gather(operations.stop_all(core, caller)))
        if action == "restartall":
            everything = operations.resolve(core, caller, ["all"])
            return _all_message("restarted", await _gather(
                operations.restart_processes(core, caller, everything)))
        try:
            # the one process a per-process action names; a group spec (`g:*`) is no process
            proc = operations.find_process(core, caller, namespec)
        except FaultError:
            return f"No such process named {namespec}"
        try:
            if action == "clearlog":
                operations.clear_process_logs(core, caller, namespec)
                return f"Log for {namespec} cleared"
            act, done = _PROCESS_CALLS[action]
            [result] = await act(core, caller, [proc])
        except FaultError as exc:
            return f"ERROR: Process {namespec}: {_reason(exc)}"
        if not result.ok:
            return f"ERROR: Process {namespec}: {_reason_code(result.status, result.description)}"
        return f"Process {namespec} {done}"

    def render_status(self, caller: Caller, message: str | None) -> str:
        info = operations.agent_info(self.core, caller)
        infos = operations.all_process_info(self.core, caller, during_shutdown=True)
        parts = [_head(f"Processes on {info.node}"), _header(info)]
        parts.append("<main>")
        parts.append(_notice(info))
        if message:
            kind = "msg error" if _is_error(message) else "msg"
            parts.append(f'<p class="{kind}" role="status" id="message">{_e(message)}</p>')
        parts.append(
            '<form class="bar" method="post" action="index.html">'
            '<button name="action" value="refresh">Refresh</button>'
            '<span class="fill"></span>'
            '<button name="action" value="restartall">Restart all</button>'
            '<button class="danger" name="action" value="stopall">Stop all</button>'
            "</form>")
        if infos:
            parts.append('<table id="processes"><thead><tr><th>State</th><th>Description</th>'
                         "<th>Name</th><th>Actions</th></tr></thead><tbody>")
            verdicts = {(p.group.name, p.name): p.health.verdict for p in self.core.all_processes()
                        if p.health is not None}
            parts.extend(_row(info, verdicts.get((info.group, info.name))) for info in infos)
            parts.append("</tbody></table>")
        else:
            parts.append('<p class="empty">No programs are configured.</p>')
        parts.append("</main>")
        parts.append(_footer())
        return "".join(parts)

    # -- the tail view ---------------------------------------------------------------------

    async def tail(self, request: web.Request) -> web.StreamResponse:
        form = await _form(request)
        namespec = form.get("processname", "")
        channel = "stderr" if form.get("channel") == "stderr" else "stdout"
        limit_text = form.get("limit", "")
        limit = int(limit_text) if limit_text.isdigit() else TAIL_MIN
        limit = min(max(limit, TAIL_MIN), TAIL_MAX)
        status = 200
        caller = _caller(request)
        if not namespec:
            text, status = "No process name found", 400
        else:
            try:
                data = operations.read_process_log(self.core, caller, namespec, channel, -limit, 0)
                text = data.decode("utf-8", errors="replace")
            except FaultError as exc:
                if exc.code == Fault.BAD_NAME:
                    text, status = f"No such process named {namespec}", 404
                elif exc.code == Fault.NO_FILE:
                    text = f"No file for {namespec}"
                else:
                    text = f"ERROR: {_reason(exc)}"
        return _html(self.render_tail(caller, namespec, channel, limit, text), status=status)

    def render_tail(self, caller: Caller, namespec: str, channel: str, limit: int, text: str) -> str:
        parts = [_head(f"Tail of {namespec} ({channel})" if namespec else "Tail"),
                 _header(operations.agent_info(self.core, caller)), "<main>"]
        if namespec:
            def here(**changes: object) -> str:
                query = {"processname": namespec, "limit": limit, "channel": channel, **changes}
                if query["channel"] == "stdout":
                    del query["channel"]
                return "tail.html?" + "&".join(f"{k}={quote(str(v), safe='')}"
                                               for k, v in query.items())

            other = "stderr" if channel == "stdout" else "stdout"
            follow = f"logtail/{quote(namespec, safe='')}"
            if channel == "stderr":
                follow += "/stderr"
            parts.append(
                '<div class="bar">'
                f'<a href="index.html">&larr; All processes</a>'
                f'<strong>{_e(namespec)}</strong><span>{_e(channel)}, last {limit} bytes</span>'
                '<span class="fill"></span>'
                f'<a id="refresh" href="{_e(here())}">Refresh</a>'
                f'<a href="{_e(here(limit=min(limit * 4, TAIL_MAX)))}">Show more</a>'
                f'<a href="{_e(here(channel=other))}">Show {other}</a>'
                f'<a href="{_e(follow)}" target="_blank" rel="noopener">Follow (tail -f)</a>'
                "</div>")
        else:
            parts.append('<div class="bar"><a href="index.html">&larr; All processes</a></div>')
        parts.append(f'<pre id="log">{_e(text)}</pre></main>')
        parts.append(_footer())
        return "".join(parts)


# -- pieces ------------------------------------------------------------------------------------

_PROCESS_CALLS = {"start": (operations.start_processes, "started"),
                  "stop": (operations.stop_processes, "stopped"),
                  "restart": (operations.restart_processes, "restarted")}


def _caller(request: web.Request) -> Caller:
    return Caller("web", request.remote or "")


def _header(info: AgentInfo) -> str:
    return (f'<header><h1><a href="index.html">{_e(info.node)}</a></h1>'
            f"<span>fleetvisor agent &middot; {_e(info.identifier)}</span></header>")


def _notice(info: AgentInfo) -> str:
    if info.state >= SupervisorState.RUNNING:
        return ""
    doing = "restarting" if info.state == SupervisorState.RESTARTING else "shutting down"
    return f'<p class="msg error">The daemon is {doing}; processes cannot be changed now.</p>'


_HEALTH_CLASS = {Health.HEALTHY: "ok", Health.UNHEALTHY: "bad", Health.UNKNOWN: ""}


def _health_badge(verdict: Verdict | None) -> str:
    """A process's health check verdict beside its state (nothing without a check)."""
    if verdict is None:
        return ""
    title = f' title="{_e(verdict.message)}"' if verdict.health is Health.UNHEALTHY and verdict.message else ""
    return (f' <span class="state health {_HEALTH_CLASS[verdict.health]}"{title}>'
            f"{verdict.health.value}</span>")


def _row(info: ProcessInfo, verdict: Verdict | None = None) -> str:
    namespec = make_namespec(info.group, info.name)
    quoted = quote(namespec, safe="")
    state = info.state
    buttons = []
    if state == ProcessState.RUNNING:
        buttons += [("restart", "Restart"), ("stop", "Stop")]
    elif state in (ProcessState.STARTING, ProcessState.BACKOFF):
        buttons += [("stop", "Stop")]
    elif state in (ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL):
        buttons += [("start", "Start")]
    buttons.append(("clearlog", "Clear log"))
    spec = _e(namespec)
    return (
        f'<tr data-process="{spec}" data-state="{state.name}">'
        f'<td><span class="state {_STATE_CLASS.get(state, "")}">{state.name.lower()}</span>'
        f"{_health_badge(verdict)}</td>"
        f'<td class="desc">{_e(info.description)}</td>'
        f'<td class="name"><a href="tail.html?processname={_e(quoted)}">{spec}</a></td>'
        '<td class="actions"><form method="post" action="index.html">'
        f'<input type="hidden" name="processname" value="{spec}">'
        + "".join(f'<button name="action" value="{value}">{label}</button>'
                  for value, label in buttons)
        + f'<a href="logtail/{_e(quoted)}" target="_blank" rel="noopener" '
        'title="Follow stdout (tail -f)">stdout</a>'
        f'<a href="logtail/{_e(quoted)}/stderr" target="_blank" rel="noopener" '
        'title="Follow stderr (tail -f)">stderr</a>'
        "</form></td></tr>")


def _head(title: str) -> str:
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_e(title)}</title>'
            f"<style>{_STYLE}</style></head><body>")


def _footer() -> str:
    return (f"<footer>fleetvisor agent &middot; supervisor {operations.SUPERVISOR_VERSION} "
            "compatible</footer></body></html>")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=_HEADERS)


def _bad_request(why: str) -> web.Response:
    return web.Response(status=400, text=f"400 Bad Request: {why}\n", content_type="text/plain")


def _refused() -> web.Response:
    return web.Response(status=403, content_type="text/plain",
                        text="403 Forbidden: actions are not accepted from another site\n")


def _cross_site(request: web.Request) -> bool:
    """Did a browser send this on behalf of another site? (CSRF with cached credentials.)"""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "cross-site"
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser, or a browser navigating by itself
    return origin == "null" or urlsplit(origin).netloc != request.host


async def _form(request: web.Request) -> Mapping[str, str]:
    """The query and, for a POST, the form body; the first value of each name, the body's
    winning over the query's, as supervisord merges them."""
    form: dict[str, str] = {}
    for key, value in request.query.items():
        form.setdefault(key, value)
    if request.method == "POST":
        posted: dict[str, str] = {}
        for key, field in (await request.post()).items():
            if isinstance(field, str):
                posted.setdefault(key, field)
        form.update(posted)
    return form


async def _gather(results: Awaitable[list[ProcessResult]]) -> list[ProcessResult] | str:
    """The results of an all-processes operation, or the message if it was refused."""
    try:
        return await results
    except FaultError as exc:
        return f"ERROR: {_reason(exc)}"


def _all_message(done: str, results: list[ProcessResult] | str) -> str:
    if isinstance(results, str):
        return results
    message = f"All {done} at {time.ctime()}"
    failed = [r for r in results if r.status != Fault.SUCCESS]
    if failed:
        details = ", ".join(
            f"{make_namespec(r.group, r.name)} ({_reason_code(r.status, r.description)})"
            for r in failed)
        message = f"ERROR: {message}, except {details}"
    return message


def _reason(exc: FaultError) -> str:
    return _reason_code(exc.code, exc.text)


def _reason_code(code: Fault, text: str) -> str:
    reason = _REASONS.get(code)
    if reason is not None:
        return reason
    if code == Fault.FAILED and ": " in text:
        return text.split(": ", 1)[1]  # the core's own explanation
    return f"unexpected rpc fault [{int(code)}] {text}"


def _is_error(message: str) -> bool:
    return message.startswith(("ERROR", "No such process", "unexpected rpc fault"))
