"""Shared pieces of the web page tests: an agent with an inet HTTP server, a plain HTTP
client that does not follow redirects, and readers for what the page shows."""

from __future__ import annotations

import base64
import html
import http.client
import re
import textwrap
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlencode

from tests.support import wait_for

from .harness import write_config

USER, PASSWORD = "admin", "s3cret"
LOG_TEXT = '<script>alert("x")</script> & <b>bold</b>'

PROGRAMS = """
[program:sleeper]
command=/bin/sleep 1000
startsecs=0
stopwaitsecs=5

[program:talker]
command=/bin/sh -c 'cat %(here)s/talk.txt; echo oops >&2; exec sleep 1000'
startsecs=0

[program:worker]
command=/bin/sleep 1000
numprocs=2
process_name=%(program_name)s_%(process_num)d
startsecs=0

[program:idle]
command=/bin/sleep 1000
autostart=false
startsecs=0
"""


def web_config(tmp_path: Path, port: int, programs: str = PROGRAMS, auth: bool = True) -> Path:
    (tmp_path / "talk.txt").write_text(LOG_TEXT + "\n")
    credentials = f"username={USER}\npassword={PASSWORD}\n" if auth else ""
    body = textwrap.dedent(f"""
        [supervisord]
        logfile=%(here)s/main.log
        pidfile=%(here)s/supervisord.pid
        childlogdir=%(here)s
        loglevel=info

        [inet_http_server]
        port=127.0.0.1:{port}
        """) + credentials + textwrap.dedent("""
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        """) + textwrap.dedent(programs)
    return write_config(tmp_path, body)


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    @property
    def message(self) -> str | None:
        """The status message a redirect carries back to the page."""
        match = re.search(r"[?&]message=([^&]*)", self.location or "")
        return unquote(match.group(1)) if match else None


class Web:
    """HTTP to one agent, by hand: redirects are answers to look at, not to follow."""

    def __init__(self, port: int, auth: tuple[str, str] | None = (USER, PASSWORD)) -> None:
        self.port = port
        self.auth = auth

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, auth: tuple[str, str] | None | bool = True,
                timeout: float = 30.0) -> Reply:
        sent = dict(headers or {})
        credentials = self.auth if auth is True else (auth or None)
        if credentials:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode("utf-8", errors="replace")
            return Reply(response.status, response.headers, text)
        finally:
            conn.close()

    def get(self, path: str, **kwargs) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, fields: dict[str, str], **kwargs) -> Reply:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **kwargs.pop("headers", {})}
        return self.request("POST", path, body=urlencode(fields).encode(), headers=headers, **kwargs)

    def ready(self) -> bool:
        try:
            return self.get("/ok.html").status == 200
        except OSError:
            return False


def rpc(port: int) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/RPC2")


def state(port: int, namespec: str) -> str:
    return rpc(port).supervisor.getProcessInfo(namespec)["statename"]


def wait_state(port: int, namespec: str, wanted: str, timeout: float = 10.0) -> None:
    wait_for(lambda: state(port, namespec) == wanted, timeout, f"{namespec} to be {wanted}")


def wait_all_running(port: int, names: list[str], timeout: float = 15.0) -> None:
    def all_running() -> bool:
        try:
            infos = rpc(port).supervisor.getAllProcessInfo()
        except OSError:
            return False
        states = {f"{i['group']}:{i['name']}": i["statename"] for i in infos}
        return all(states.get(n if ":" in n else f"{n}:{n}") == "RUNNING" for n in names)
    wait_for(all_running, timeout, f"{', '.join(names)} to be RUNNING")


def rows(page: str) -> dict[str, str]:
    """namespec -> state name, as the page lists them."""
    return {html.unescape(name): st for name, st in
            re.findall(r'<tr data-process="([^"]*)" data-state="(\w+)">', page)}


def shown_message(page: str) -> str | None:
    match = re.search(r'<p class="msg[^"]*" role="status" id="message">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else None
