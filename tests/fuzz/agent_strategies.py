"""Hypothesis strategies for the agent's input faces: config files, XML-RPC calls and bodies, HTTP requests,
event-listener answers and child output with capture tokens.

Each strategy mixes values that should be accepted with ones that should not, so a run exercises both outcomes;
the known-good and known-bad pools of the hand-picked tests (tests/config_oracle.py) are part of the mix.
"""

from __future__ import annotations

import string
import xmlrpc.client
from dataclasses import dataclass, field

from hypothesis import strategies as st

from fleetvisor.agent.events import BEGIN_TOKEN, END_TOKEN
from tests.config_oracle import RANDOM_BAD, RANDOM_GOOD


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True once in `n` draws. (Hypothesis favours the ends of an integer range, and shrinks towards False.)"""
    return st.sampled_from([False] * (n - 1) + [True])


# -- config files --------------------------------------------------------------------------------------------

# What `%(...)s` may name in a program section, plus a few that are wrong.
EXPANSIONS = ["%(program_name)s", "%(process_num)s", "%(process_num)02d", "%(numprocs)s", "%(group_name)s",
              "%(here)s", "%(host_node_name)s", "%(ENV_HOME)s", "%(ENV_APP)s", "%(ENV_PCT)s", "%(ENV_LOCAL)s",
              "%%", "%(nope)s", "%", "%(process_num)x", "%(numprocs)d"]
WORDS = ["a", "x-1", "/bin/sh", "-c", "echo", "srv", ".", "_", "é", "#", ";", " ;c", "=", ",", ":", "~"]

text_with_expansions = st.lists(st.sampled_from(EXPANSIONS + WORDS), max_size=6).map("".join)


@dataclass(frozen=True)
class Choice:
    """An option's values: ones both parsers should accept, and others (bad, or at the edges)."""

    good: st.SearchStrategy[str]
    other: st.SearchStrategy[str]

    def values(self, bad_percent: int) -> st.SearchStrategy[str]:
        """`other` `bad_percent` times in a hundred. A file drawn with 0 is all good values and has a fair chance
        to be accepted by both parsers, which is where the oracle compares values."""
        if not bad_percent:
            return self.good
        return st.integers(0, 99).flatmap(lambda n: self.other if n >= 100 - bad_percent else self.good)


def pool(option: str) -> st.SearchStrategy[str]:
    return st.sampled_from(RANDOM_GOOD[option])


def hand_picked(option: str, other: st.SearchStrategy[str] | None = None) -> Choice:
    """The hand-picked good values of `option`; its bad ones and `other` as the others."""
    bad = [st.sampled_from(RANDOM_BAD[option])] if option in RANDOM_BAD else []
    return Choice(pool(option), st.one_of(*bad, *([other] if other is not None else [])))


BOOLS = Choice(st.sampled_from(["true", "false", "yes", "no", "on", "off", "1", "0", "TRUE", "No"]),
               st.sampled_from(["maybe", "", "2", "tru"]))
SIZES = Choice(st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**6),
                         st.sampled_from(["", "KB", "MB", "GB", "kb", " MB"])),
               st.sampled_from(["-3", "MB", "1.5MB", "x", "10b", "99999999999999999999", "1TB", ""]))
INTS = Choice(st.integers(0, 50).map(str),
              st.one_of(st.integers(-2**70, 2**70).map(str),
                        st.sampled_from(["x", "", "1.5", "0x10", " 3", "+4", "1_000", "\u0663", "-1"])))
SIGNALS = Choice(st.sampled_from(["TERM", "SIGTERM", "kill", "HUP", "INT", "QUIT", "USR1", "usr2", "SIGRTMIN", "9",
                                  "15", "STOP"]),
                 st.one_of(st.sampled_from(["RTMAX", "x", "", "SIG", "SIGSIGTERM", "SIGRTMIN+1"]),
                           st.integers(-2, 70).map(str)))
EXITCODES = Choice(st.lists(st.integers(0, 255), min_size=1, max_size=4).map(lambda c: ",".join(map(str, c))),
                   st.one_of(st.lists(st.integers(-1, 300), max_size=4).map(lambda c: ",".join(map(str, c))),
                             st.sampled_from(["0,", ",", "a", "0, 2", "1 2"])))
UMASKS = Choice(st.integers(0, 0o777).map(lambda n: f"{n:o}"),
                st.one_of(st.integers(0o777, 0o10000).map(lambda n: f"0{n:o}"),
                          st.sampled_from(["8", "0o22", "x", "", "-1", "0x1"])))
USERS = Choice(st.sampled_from(["root", "nobody", "0", "65534"]),
               st.sampled_from(["no-such-user-xyz", "%(ENV_LOCAL)s", "", "99999", "-1"]))
ENV_KEYS = Choice(st.sampled_from(["A", "LOCAL", "B_2", "path", "X"]), st.sampled_from(["1A", "", "A B", "A-B"]))
ENV_VALUES = Choice(st.sampled_from(["v", "%(ENV_APP)s", "%(program_name)s", "a b", "a,b", "%(process_num)s",
                                     "x=y", "%%", "é", ""]),
                    st.one_of(text_with_expansions, st.text(alphabet="ab, =\"'#;%\\\t:/", max_size=8)))


QUOTES = Choice(st.just('"'), st.sampled_from(["'", ""]))
SEPARATORS = Choice(st.just(","), st.sampled_from([", ", " ", ",\n  "]))


@st.composite
def environment_strings(draw: st.DrawFn, bad_percent: int = 20) -> str:
    """KEY=value pairs, values quoted with " or ' or not at all, sometimes with quotes and commas inside."""
    items = []
    for _ in range(draw(st.integers(0, 4))):
        key, value = draw(ENV_KEYS.values(bad_percent)), draw(ENV_VALUES.values(bad_percent))
        quote = draw(QUOTES.values(bad_percent))
        items.append(f"{key}={quote}{value}{quote}")
    return draw(SEPARATORS.values(bad_percent)).join(items)


class Environments(Choice):
    """environment=: its pairs are drawn good or not with the file's rate too."""

    def __init__(self) -> None:
        super().__init__(pool("environment"), st.sampled_from(RANDOM_BAD["environment"]))

    def values(self, bad_percent: int) -> st.SearchStrategy[str]:
        return st.one_of(environment_strings(bad_percent), super().values(bad_percent))


PATHS = Choice(st.one_of(pool("stdout_logfile"), pool("stderr_logfile"),
                         st.builds(lambda a: f"%(here)s/{a}.log",
                                   st.sampled_from(["-%(process_num)s", "-%(program_name)s", "x", "%(group_name)s"]))),
               st.one_of(st.sampled_from(["none", "/no/such/dir/x.log", "%(here)s/x%%d.log", "relative.log",
                                          "~/x.log", ""]),
                         st.builds(lambda a: f"%(here)s/{a}.log", text_with_expansions)))

# The values of every [program:x] option, by its datatype.
PROGRAM_OPTIONS: dict[str, Choice] = {
    "command": hand_picked("command", text_with_expansions.filter(bool)),
    "process_name": hand_picked("process_name", text_with_expansions),
    "numprocs": Choice(st.integers(1, 4).map(str), INTS.other),
    "numprocs_start": Choice(st.integers(0, 5).map(str), INTS.other),
    "priority": INTS, "startsecs": INTS, "startretries": INTS, "stopwaitsecs": INTS,
    "stdout_logfile_backups": INTS, "stderr_logfile_backups": INTS,
    "autostart": BOOLS, "stopasgroup": BOOLS, "killasgroup": BOOLS, "redirect_stderr": BOOLS,
    "stdout_events_enabled": BOOLS, "stderr_events_enabled": BOOLS, "stdout_syslog": BOOLS, "stderr_syslog": BOOLS,
    "autorestart": Choice(st.sampled_from(["true", "false", "unexpected", "TRUE", "Unexpected"]),
                          st.sampled_from(["sometimes", ""])),
    "exitcodes": EXITCODES, "stopsignal": SIGNALS, "umask": UMASKS, "user": USERS,
    "stdout_logfile_maxbytes": SIZES, "stderr_logfile_maxbytes": SIZES,
    "stdout_capture_maxbytes": SIZES, "stderr_capture_maxbytes": SIZES,
    "stdout_logfile": PATHS, "stderr_logfile": PATHS,
    "directory": hand_picked("directory", text_with_expansions),
    "environment": Environments(),
    "serverurl": Choice(st.sampled_from(["AUTO", "http://x", "unix:///tmp/x.sock", "%(ENV_APP)s"]), st.just("")),
}
LISTENER_OPTIONS: dict[str, Choice] = {
    "events": Choice(st.lists(st.sampled_from(["TICK_5", "TICK_60", "PROCESS_STATE", "PROCESS_STATE_EXITED", "EVENT",
                                               "PROCESS_COMMUNICATION", "REMOTE_COMMUNICATION"]),
                              min_size=1, max_size=3).map(",".join),
                     st.sampled_from(["NOPE", "", "TICK_5,", "TICK_5 TICK_60"])),
    "buffer_size": Choice(st.integers(1, 100).map(str), INTS.other),
    "result_handler": Choice(st.just("supervisor.dispatchers:default_handler"),
                             st.sampled_from(["nosuchmodule:x", "os:path", "x"])),
}
FCGI_OPTIONS: dict[str, Choice] = {
    "socket": Choice(st.sampled_from(["tcp://localhost:9000", "unix:///tmp/%(program_name)s.sock"]),
                     st.sampled_from(["unix://rel.sock", "tcp://h", "x", ""])),
    "socket_mode": Choice(st.sampled_from(["0700", "0666"]), st.sampled_from(["9", "x"])),
}
SUPERVISORD_OPTIONS: dict[str, Choice] = {
    "logfile": Choice(st.sampled_from(["%(here)s/main.log", "syslog", "main.log"]), st.just("/no/such/dir/x.log")),
    "logfile_maxbytes": SIZES, "logfile_backups": INTS,
    "loglevel": Choice(st.sampled_from(["info", "debug", "warn", "trace", "blather", "critical", "error", "INFO"]),
                       st.sampled_from(["warning", "", "x"])),
    "umask": UMASKS, "nodaemon": BOOLS, "silent": BOOLS, "minfds": INTS, "minprocs": INTS, "nocleanup": BOOLS,
    "strip_ansi": BOOLS,
    "childlogdir": Choice(st.sampled_from(["%(here)s", "/tmp", "%(ENV_HOME)s"]), st.just("/no/such/dir")),
    "identifier": Choice(st.sampled_from(["sup", "sup-%(ENV_APP)s", "%(here)s", "a;b"]), text_with_expansions),
    "environment": Environments(),
    "directory": Choice(st.sampled_from(["/tmp", "%(here)s"]), st.just("/no/such")),
}
INET_PORTS = Choice(st.builds(lambda h, p: f"{h}:{p}", st.sampled_from(["127.0.0.1", "*", "localhost", ""]),
                              st.integers(1, 65535)),
                    st.one_of(st.integers(-1, 70000).map(str), st.sampled_from(["x", "127.0.0.1:", ":9001", "a:b",
                                                                                "::1:9001", "127.0.0.1:70000"])))
NAMES = Choice(st.sampled_from(["p0", "p1", "p2", "web", "Ü"]), st.sampled_from(["w:x", "a b", "", "a/b"]))


@st.composite
def option_lines(draw: st.DrawFn, options: dict[str, Choice], bad_percent: int,
                 required: tuple[str, ...] = ()) -> list[str]:
    """`name=value` lines for a random subset of `options` (always the `required` ones)."""
    chosen = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=8))
    chosen += [name for name in required if name not in chosen]
    return [draw(ini_line(name, draw(options[name].values(bad_percent)))) for name in chosen]


@st.composite
def ini_line(draw: st.DrawFn, name: str, value: str) -> str:
    """`name=value` as people write it: other separators and spacing, a capital letter, an inline comment (or
    a `;` that is not one), comment and blank lines around it, the value continued on indented lines."""
    if draw(one_in(2)):
        return f"{name}={value}"
    key = name.capitalize() if draw(one_in(4)) else name
    separator = draw(st.sampled_from(["=", " = ", ":", " : ", "= ", "\t=\t"]))
    if " " in value and draw(one_in(3)):
        head, _, tail = value.partition(" ")
        value = head + draw(st.sampled_from(["\n  ", "\n\t", "\n  ;comment\n  ", "\n\n  "])) + tail
    comment = draw(st.sampled_from(["", "", " ; note", "\t;note", " # note", ";not-a-comment", " ;"]))
    around = draw(st.sampled_from(["", "", "; a comment line\n", "\n", "# x\n", "  ; indented comment\n"]))
    return f"{around}{key}{separator}{value}{comment}"


@dataclass
class ConfigTree:
    """A main file and the files it includes, relative to one directory."""

    main: str
    includes: dict[str, str] = field(default_factory=dict)


@st.composite
def program_section(draw: st.DrawFn, name: str, bad_percent: int) -> str:
    kind = draw(st.sampled_from(["program", "program", "program", "eventlistener", "fcgi-program"]))
    options = dict(PROGRAM_OPTIONS)
    required: tuple[str, ...] = ("command", "process_name")
    if kind == "eventlistener":
        options.update(LISTENER_OPTIONS)
        required += ("events",)
    if kind == "fcgi-program":
        options.update(FCGI_OPTIONS)
        required += ("socket",)
    return "\n".join([f"[{kind}:{name}]", *draw(option_lines(options, bad_percent, required))])


@st.composite
def config_trees(draw: st.DrawFn) -> ConfigTree:
    """[supervisord] with random options, servers, programs of every kind, groups and globbed includes. Half the
    files have only good values; the others a share of bad ones."""
    bad = draw(st.sampled_from([0, 0, 0, 3, 10, 30]))
    names = draw(st.lists(NAMES.values(bad), unique=True, max_size=4))
    sections = ["\n".join(["[supervisord]", *draw(option_lines(SUPERVISORD_OPTIONS, bad))])]
    if draw(st.booleans()):
        sections.append(f"[inet_http_server]\nport={draw(INET_PORTS.values(bad))}"
                        + draw(Choice(st.sampled_from(["", "\nusername=u\npassword=p"]),
                                      st.just("\nusername=u")).values(bad)))
    if draw(st.booleans()):
        sections.append("[unix_http_server]\nfile=%(here)s/s.sock"
                        + draw(Choice(st.sampled_from(["", "\nchmod=0700", "\nchown=root:root"]),
                                      st.sampled_from(["\nchmod=9", "\nchown=nosuchuser"])).values(bad)))
    included = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    for name in names:
        if name not in included:
            sections.append(draw(program_section(name, bad)))
    for _ in range(draw(st.integers(0, 2))):
        members = draw(st.lists(Choice(st.sampled_from(names), st.sampled_from(["nope", ""])).values(bad)
                                if names else st.just("nope"), max_size=3))
        sections.append(f"[group:{draw(st.sampled_from(['g', 'h', 'p0']))}]\nprograms={','.join(members)}"
                        + draw(Choice(st.sampled_from(["", "\npriority=5"]), st.just("\npriority=x")).values(bad)))
    includes = {}
    if included or draw(st.booleans()):
        files = [f"conf.d/{name.replace('/', '_')}{draw(st.sampled_from(['.conf', '.ini', '.txt']))}"
                 for name in included]
        for path, name in zip(files, included, strict=True):
            includes[path] = draw(program_section(name, bad))
        patterns = draw(st.lists(st.sampled_from(["conf.d/*.conf", "%(here)s/conf.d/*.ini", "conf.d/*",
                                                  "conf.d/[pw]*.conf", "nomatch/*.conf", "conf.d/?0.*"]),
                                 min_size=1, max_size=3))
        sections.append("[include]\nfiles=" + " ".join(patterns))
    if draw(one_in(5)):  # defaults every section sees
        sections.append("\n".join(["[DEFAULT]", *draw(option_lines(
            {k: PROGRAM_OPTIONS[k] for k in ("autostart", "startsecs", "priority", "stopsignal", "directory")}, bad))]))
    if names and draw(one_in(5)):  # a section said twice merges, a repeated option wins
        again = draw(st.sampled_from(names))
        kind = draw(st.sampled_from(["program", "eventlistener", "fcgi-program"]))
        sections.append("\n".join([f"[{kind}:{again}]", *draw(option_lines(PROGRAM_OPTIONS, bad))]))
    order = draw(st.permutations(sections))
    return ConfigTree("\n".join(order) + "\n", includes)


# -- XML-RPC ---------------------------------------------------------------------------------------------------

# Text an XML document may hold (no control characters but tab and newline; xmlrpc.client does not escape them).
xml_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), include_characters="\t\n",
                                 exclude_characters="\ufffe\uffff"), max_size=20)
# Values xmlrpc.client can marshal, in every XML-RPC type, nested a little.
XMLRPC_SCALARS = st.one_of(
    st.integers(-2**31, 2**31 - 1), st.booleans(), xml_text,
    st.floats(allow_nan=False, allow_infinity=False), st.binary(max_size=20).map(xmlrpc.client.Binary),
    st.sampled_from(["steady", "steady:steady", "steady:*", "other", "*", "", "TERM", "HUP", "9", "-1", "0",
                     "foo:bar:baz", "steady:", ":steady", "x" * 300]),
)
xmlrpc_values = st.recursive(
    XMLRPC_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(xml_text, inner, max_size=3)),
    max_leaves=6)

# Methods that change nothing, and ones that change state when given right arguments (their refusals must not).
READING_METHODS = [
    "supervisor.getAPIVersion", "supervisor.getVersion", "supervisor.getSupervisorVersion",
    "supervisor.getIdentification", "supervisor.getState", "supervisor.getPID", "supervisor.readLog",
    "supervisor.readMainLog", "supervisor.getAllConfigInfo", "supervisor.getProcessInfo",
    "supervisor.getAllProcessInfo", "supervisor.readProcessLog", "supervisor.readProcessStdoutLog",
    "supervisor.readProcessStderrLog", "supervisor.tailProcessLog", "supervisor.tailProcessStdoutLog",
    "supervisor.tailProcessStderrLog", "system.listMethods", "system.methodHelp", "system.methodSignature",
]
CHANGING_METHODS = [
    "supervisor.startProcess", "supervisor.startProcessGroup", "supervisor.stopProcess",
    "supervisor.stopProcessGroup", "supervisor.signalProcess", "supervisor.signalProcessGroup",
    "supervisor.addProcessGroup", "supervisor.removeProcessGroup", "supervisor.clearLog",
    "supervisor.clearProcessLog", "supervisor.clearProcessLogs", "supervisor.sendProcessStdin",
    "supervisor.sendRemoteCommEvent", "system.multicall",
]
# Never called with arbitrary arguments: they end or restart the daemon, or change every process at once.
WHOLE_DAEMON_METHODS = ["supervisor.shutdown", "supervisor.restart", "supervisor.reloadConfig",
                        "supervisor.startAllProcesses", "supervisor.stopAllProcesses",
                        "supervisor.signalAllProcesses", "supervisor.clearAllProcessLogs"]

method_names = st.one_of(st.sampled_from(READING_METHODS + CHANGING_METHODS),
                         st.sampled_from(["supervisor.nosuch", "nosuch", "a.b.c", "supervisor._update", ".",
                                          "system.listMethods.x", "supervisor.ALIASES", "supervisor.__init__"]),
                         st.text(alphabet=string.ascii_letters + "._", min_size=1, max_size=20))
# A name xmlrpc.client writes as-is into <methodName>: one with markup in it is a different (malformed) body.


def method_calls(names: st.SearchStrategy[str] = method_names) -> st.SearchStrategy[tuple[str, tuple]]:
    return st.tuples(names, st.lists(xmlrpc_values, max_size=4).map(tuple))


def multicall_params() -> st.SearchStrategy[tuple]:
    """system.multicall's one argument: a list of call structs, some malformed."""
    call = st.one_of(
        st.builds(lambda n, p: {"methodName": n, "params": list(p)}, method_names, st.lists(xmlrpc_values,
                                                                                            max_size=3)),
        st.dictionaries(st.sampled_from(["methodName", "params", "x"]), xmlrpc_values, max_size=2),
        xmlrpc_values)
    return st.lists(call, max_size=4).map(lambda calls: (calls,))


def _element(tag: str, inner: str) -> str:
    return f"<{tag}>{inner}</{tag}>"


# Hand-written XML-RPC values, including ones xmlrpc.client would never produce.
RAW_VALUES = st.recursive(
    st.one_of(
        st.builds(lambda t, v: _element("value", _element(t, v)),
                  st.sampled_from(["int", "i4", "i8", "double", "string", "boolean", "base64", "dateTime.iso8601",
                                   "nil", "bogus", "struct", "array"]),
                  st.sampled_from(["", "1", "-1", "99999999999999999999999", "1e400", "nan", "x", "2", "AAA=",
                                   "====", "20260101T00:00:00", "&amp;", "&#0;", "&#xD800;", "]]>", "<a/>"])),
        st.text(alphabet="<>/&;valueintsrgyd", max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda v: "<value><array><data>" + "".join(v) + "</data></array></value>"),
        st.lists(st.tuples(st.text(max_size=4), inner), max_size=2).map(
            lambda m: "<value><struct>" + "".join(f"<member><name>{k}</name>{v}</member>" for k, v in m)
            + "</struct></value>")),
    max_leaves=5)


@st.composite
def malformed_bodies(draw: st.DrawFn) -> bytes:
    """Bodies for POST /RPC2 that are not a well-formed call, or are one with hand-made values."""
    name = draw(st.one_of(st.sampled_from(READING_METHODS), method_names, st.just("")))
    params = "".join(f"<param>{v}</param>" for v in draw(st.lists(RAW_VALUES, max_size=3)))
    body = f"<?xml version='1.0'?><methodCall><methodName>{name}</methodName><params>{params}</params></methodCall>"
    encoded = body.encode("utf-8", "surrogatepass")
    kind = draw(st.sampled_from(["whole", "cut", "junk", "bytes", "encoding", "response"]))
    if kind == "cut":
        return encoded[:draw(st.integers(0, len(encoded)))]
    if kind == "junk":
        at = draw(st.integers(0, len(encoded)))
        return encoded[:at] + draw(st.binary(max_size=10)) + encoded[at:]
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "encoding":
        enc = draw(st.sampled_from(["latin-1", "utf-16", "nosuch", "ascii"]))
        return encoded.replace(b"version='1.0'", b"version='1.0' encoding='" + enc.encode() + b"'")
    if kind == "response":
        return xmlrpc.client.dumps((draw(xmlrpc_values),), methodresponse=True, allow_none=True).encode()
    return encoded


# -- HTTP --------------------------------------------------------------------------------------------------

PATH_PARTS = ["", "/", "RPC2", "logtail", "mainlogtail", "index.html", "tail.html", "steady", "steady:steady",
              "stdout", "stderr", "..", "%2e%2e", "%00", "%ff", "nosuch", "*", "steady:*", "stylesheets",
              "images", "supervisor.css", "icon.png", "a" * 300, "%", "%zz", ";", "é"]
QUERY_KEYS = ["processname", "action", "limit", "message", "x", "", "processname[]"]
QUERY_VALUES = ["steady", "steady:steady", "nosuch", "start", "stop", "restart", "clearlog", "stopall",
                "restartall", "tail", "-1", "0", "99999999999999999999", "1e9", "", "%", "%zz", "a&b", "é",
                "<script>"]


ROUTES = ["/", "/index.html", "/tail.html", "/ok.html", "/logtail/steady", "/logtail/steady/stderr",
          "/logtail/steady:steady/stdout", "/logtail/other", "/mainlogtail", "/RPC2", "/RPC2/x", "/stylesheets/x.css"]


@st.composite
def http_targets(draw: st.DrawFn) -> str:
    """A request target: mostly a route with the web page's parameters, sometimes a path made of pieces."""
    if not draw(one_in(4)):
        path = draw(st.sampled_from(ROUTES))
    else:
        path = "/" + "/".join(draw(st.lists(st.sampled_from(PATH_PARTS), min_size=0, max_size=4)))
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.sampled_from(QUERY_VALUES)), max_size=3))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    target = path + (("?" + query) if query or draw(st.booleans()) else "")
    if draw(one_in(6)):
        target += draw(st.sampled_from(["#frag", "?", "&&", "=", "?=&"]))
    return target


def usually(common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """`common` four times in five."""
    return one_in(5).flatmap(lambda rarely: rare if rarely else common)


HTTP_METHODS = usually(st.sampled_from(["GET", "GET", "POST", "HEAD"]),
                       st.sampled_from(["PUT", "DELETE", "OPTIONS", "PATCH", "get", "BREW", "", "G\x01T"]))
HTTP_VERSIONS = usually(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
                        st.sampled_from(["HTTP/2", "HTTP/x", "", "http/1.1"]))
HEADERS = usually(
    st.sampled_from([("Host", "localhost"), ("Connection", "close"), ("Connection", "keep-alive"),
                     ("Content-Type", "text/xml"), ("Content-Type", "application/x-www-form-urlencoded"),
                     ("Accept-Encoding", "gzip"), ("Range", "bytes=0-10"), ("If-Modified-Since", "x"),
                     ("Authorization", "Basic Zm9vOmJhcg=="), ("Origin", "http://evil.example"),
                     ("Sec-Fetch-Site", "cross-site"), ("Referer", "http://127.0.0.1/")]),
    st.tuples(st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Expect", "Authorization", "X-Junk",
                               "Content-Length ", "", "Bad Name"]),
              st.sampled_from(["", "0", "5", "-1", "99999999999", "abc", "chunked", "gzip, chunked",
                               "Basic %%%", "100-continue", "\t", "a" * 1000])))
BODIES = usually(st.sampled_from([b"", b"processname=steady&action=stop",
                                  xmlrpc.client.dumps((), "supervisor.getState").encode()]),
                 st.one_of(st.sampled_from([b"x", b"<methodCall/>", b"0\r\n\r\n", b"5\r\nab"]),
                           st.binary(max_size=30)))


@dataclass
class RawRequest:
    """An HTTP request as bytes, and how it is written: in `pieces` (split writes), maybe cut short."""

    data: bytes
    cuts: list[int]
    complete: bool


@st.composite
def raw_requests(draw: st.DrawFn, cut_short: bool | None = None) -> RawRequest:
    """A request line, headers and a body; a Content-Length that fits the body unless a header says otherwise.
    One in five is cut short (or, by `cut_short`, all or none)."""
    method, version = draw(HTTP_METHODS), draw(HTTP_VERSIONS)
    lines = [f"{method} {draw(http_targets())} {version}".encode("utf-8", "surrogatepass")]
    headers = draw(st.lists(HEADERS, max_size=4))
    if not draw(one_in(8)):
        headers.insert(0, ("Host", "127.0.0.1"))  # HTTP/1.1 requires one
    body = draw(BODIES) if method not in ("GET", "HEAD") or draw(one_in(5)) else b""
    if body and not any(name.lower().startswith(("content-length", "transfer-encoding")) for name, _ in headers):
        headers.append(("Content-Length", str(len(body))))
    lines += [f"{name}: {value}".encode() for name, value in headers]
    if draw(one_in(10)):
        lines.append(draw(st.binary(max_size=30)))  # a header line that is not one
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=3, unique=True)))
    complete = not (draw(one_in(5)) if cut_short is None else cut_short)
    if not complete:
        data = data[:draw(st.integers(0, len(data) - 1))]
    return RawRequest(data, [c for c in cuts if c < len(data)], complete)


# -- the event listener protocol -----------------------------------------------------------------------------

# Pieces of what a listener writes: the protocol's own words and near misses.
LISTENER_PIECES = [b"READY\n", b"RESULT 2\nOK", b"RESULT 4\nFAIL", b"RESULT 0\n", b"RESULT ", b"2\n", b"OK",
                   b"READY", b"\n", b"RESULT x\n", b"RESULT -1\n", b"RESULT 99\n", b"RESULT 2 \nOK", b"result 2\nOK",
                   b"READY\r\n", b"RESULT \xd9\xa3\n", b"\x00", b"\xff\xfe"]
garbage_streams = st.lists(st.one_of(st.sampled_from(LISTENER_PIECES), st.binary(max_size=8)), max_size=8).map(
    b"".join)


@st.composite
def conversations(draw: st.DrawFn) -> list[bytes]:
    """What a listener writes, write by write: mostly the protocol (READY, then a RESULT with its body, the
    length sometimes wrong), cut after each READY as a listener that waits for its event does, cut elsewhere
    too. Half the listeners are sloppy: wrong lengths, no wait after READY, garbage."""
    sloppy = draw(st.booleans())
    words = []
    for _ in range(draw(st.integers(0, 4))):
        body = draw(st.sampled_from([b"OK", b"FAIL", b"", b"OK\n", b"RESULT 2\nOK", b"x" * 10]))
        length = draw(st.integers(0, 12)) if sloppy and draw(one_in(4)) else len(body)
        header = draw(st.sampled_from(NEAR_MISSES)) if sloppy and draw(st.booleans()) else b"RESULT %d\n"
        words += [READY, header % length + body]
    if draw(st.booleans()):
        words.append(READY)
    if words and sloppy and draw(st.booleans()):
        words.insert(draw(st.integers(0, len(words))), draw(garbage_streams))
    writes: list[bytes] = []
    for word in words:
        joined = writes and writes[-1] != READY and not writes[-1].endswith(READY) and draw(one_in(3))
        if joined or (sloppy and writes and writes[-1].endswith(READY) and draw(one_in(4))):
            writes[-1] += word
        else:
            writes.append(word)
    return [piece for write in writes for piece in draw(chunkings(write))]


READY = b"READY\n"
# RESULT lines a careless listener might write.
NEAR_MISSES = [b"result %d\n", b"RESULT %d \n", b"RESULT  %d\n", b"RESULT +%d\n", b"RESULT %d\r\n", b"RESULT\t%d\n",
               b"RESULT:%d\n", b"RESULT %d.0\n", b"RESULT -%d\n"]
listener_streams = st.one_of(garbage_streams, conversations().map(b"".join))


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """`data` cut into consecutive chunks at random places (every chunking, from whole to byte by byte)."""
    if len(data) < 2:
        return st.just([data] if data else [])
    return st.lists(st.integers(1, len(data) - 1), unique=True, max_size=min(len(data) - 1, 12)).map(
        lambda cuts: [data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=True)])


# -- child output in capture mode -----------------------------------------------------------------------------

OUTPUT_PIECES = [BEGIN_TOKEN, END_TOKEN, BEGIN_TOKEN[:5], BEGIN_TOKEN[:-1], END_TOKEN[:10], END_TOKEN[1:], b"<",
                 b"<!--", b"<!--X", b"-->", b"line\n", b"\x1b[31m", b"\x00", b"\xff"]
output_streams = st.lists(st.one_of(st.sampled_from(OUTPUT_PIECES), st.binary(max_size=12)), max_size=12).map(
    b"".join)
