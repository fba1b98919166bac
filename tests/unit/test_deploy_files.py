"""The production files in deploy/: units, example configs, TLS walkthrough, Dockerfile.

They are documentation that people copy, so each is checked against the code it feeds: the
agent's config parser, the controller's argument parser, fleetctl's certificate commands,
the entry points pyproject.toml installs, and (when present) systemd's and etcd's own view.
The example addresses must also agree across files (agents name the controllers the
controllers advertise, controllers name the etcd members the members advertise).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from fleetvisor.agent.config.parser import FLEETVISOR_OPTIONS, load, read_ini
from fleetvisor.agent.security.identity import from_pem
from fleetvisor.agent.security.rules import RULES
from fleetvisor.cli.certs import certs
from fleetvisor.controller.main import parse_args

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
AGENT_UNIT = DEPLOY / "systemd" / "fleetvisor-agent.service"
CONTROLLER_UNIT = DEPLOY / "systemd" / "fleetvisor-controller.service"
AGENT_EXAMPLE = DEPLOY / "examples" / "agent.conf"
CONTROLLER_EXAMPLES = DEPLOY / "examples" / "controller"
TLS_DOC = DEPLOY / "TLS.md"
DOCKER = DEPLOY / "docker"
HOSTS = (1, 2, 3)


# -- small readers ------------------------------------------------------------------------

def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values...]}}: keys may repeat, a trailing backslash
    continues a line, # and ; start comments. Anything else is an error, as for systemd."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None and re.fullmatch(r"[A-Za-z]+", key.strip()), \
            f"{path.name}:{number}: not a key=value line in a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    assert not pending, f"{path.name}: ends in a continuation"
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values and len(values) == 1, f"[{section}] {key}: expected one value, got {values}"
    return values[0]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= and Debian's /etc/default files read them
    (comments, optional double quotes)."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}: bad line {raw!r}"
        words = shlex.split(value)
        assert len(words) == 1, f"{path.name}: {key} must be one (quoted) value"
        env[key] = words[0]
    return env


def fenced(path: Path, lang: str) -> list[str]:
    """The bodies of the ```lang blocks of a Markdown file."""
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(), re.S | re.M)


def project_scripts() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def installed_script(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def controller_argv(env_file: Path, credentials: str = "/run/credentials/fleetvisor-controller.service"
                    ) -> tuple[list[str], dict[str, str]]:
    """The controller's command line as systemd builds it on one host: the unit's ExecStart
    with %d expanded and $FLEETVISOR_CONTROLLER_ARGS split into words from the env file."""
    unit = read_unit(CONTROLLER_UNIT)
    env = read_env_file(env_file)
    argv: list[str] = []
    for word in one(unit, "Service", "ExecStart").split():
        if word == "$FLEETVISOR_CONTROLLER_ARGS":
            argv += env["FLEETVISOR_CONTROLLER_ARGS"].split()
        else:
            assert "$" not in word, f"unexpected variable in ExecStart: {word}"
            argv.append(word.replace("%d", credentials))
    return argv, env


def etcd_member(n: int) -> dict[str, str]:
    return read_env_file(CONTROLLER_EXAMPLES / f"etcd-{n}.default")


def host_port(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


def rewrite(text: str, tmp: Path, prefixes: dict[str, str]) -> str:
    for prefix, name in prefixes.items():
        (tmp / name).mkdir(exist_ok=True)
        text = text.replace(prefix, str(tmp / name))
    return text


def fake_tls(directory: Path, *names: str) -> None:
    """Real PEM files: the parser only wants them to exist, but nothing here should pass on
    an empty file."""
    ca = directory / "ca"
    runner = CliRunner()
    assert runner.invoke(certs, ["init", "--dir", str(ca)]).exit_code == 0
    for name in names:
        assert runner.invoke(certs, ["issue", "--role", "agent", "--node", name, "--cluster", "prod",
                                     "--dir", str(ca)]).exit_code == 0
        shutil.copy(ca / f"{name}.pem", directory / f"{name}.pem")
        shutil.copy(ca / f"{name}.key", directory / f"{name}.key")
    shutil.copy(ca / "ca.pem", directory / "ca.pem")


# -- the agent's example config -----------------------------------------------------------

AGENT_PATHS = {"/etc/fleetvisor": "etc", "/var/log/fleetvisor": "log",
               "/run/fleetvisor": "run", "/var/lib/fleetvisor": "lib"}


def load_agent_example(tmp_path: Path):
    original = AGENT_EXAMPLE.read_text()
    values = "\n".join(re.sub(r"(^|\s);.*", "", line) for line in original.splitlines())
    unmapped = [p for p in re.findall(r"(?<![\w./:])/[\w./-]+", values)
                if not p.startswith((*AGENT_PATHS, "/usr/bin/"))]
    assert not unmapped, f"paths the test does not map (add them to AGENT_PATHS): {unmapped}"
    text = rewrite(original, tmp_path, AGENT_PATHS)
    fake_tls(tmp_path / "etc", "web-1")
    path = tmp_path / "agent.conf"
    path.write_text(text)
    return load(str(path), environ={})


def test_agent_example_parses_with_the_agents_parser(tmp_path):
    config = load_agent_example(tmp_path)
    assert config.warnings == ()
    fv = config.fleetvisor
    assert fv is not None
    assert fv.node == "web-1"
    assert dict(fv.labels) == {"role": "web", "zone": "a"}
    assert fv.grpc_listen == ("0.0.0.0", 7401)
    assert fv.tls_cert == str(tmp_path / "etc" / "web-1.pem")
    assert fv.tls_key == str(tmp_path / "etc" / "web-1.key")
    assert fv.tls_ca == str(tmp_path / "etc" / "ca.pem")
    assert fv.state_dir == str(tmp_path / "lib")
    assert [g.name for g in config.groups] == ["node-exporter"]
    assert [s.kind for s in config.http_servers] == ["unix"]
    assert config.ctl.serverurl == f"unix://{tmp_path / 'run' / 'supervisor.sock'}"


def test_agent_example_sets_every_fleetvisor_option():
    sections = read_ini(AGENT_EXAMPLE.read_text(), str(AGENT_EXAMPLE))
    for name in ("unix_http_server", "supervisord", "rpcinterface:supervisor", "supervisorctl",
                 "fleetvisor"):
        assert name in sections, f"[{name}] missing"
    assert set(sections["fleetvisor"].options) == FLEETVISOR_OPTIONS
    assert any(name.startswith("program:") for name in sections)


def test_agent_example_lists_the_controllers_the_controllers_advertise(tmp_path):
    fv = load_agent_example(tmp_path).fleetvisor
    advertised = []
    for n in HOSTS:
        args = parse_args(controller_argv(CONTROLLER_EXAMPLES / f"ctl-{n}.env")[0][1:])
        advertised.append(args.advertise)
    assert [f"{h}:{p}" for h, p in fv.controllers] == advertised
    assert len(fv.controllers) >= 2


def test_agent_example_matches_the_agent_unit(tmp_path):
    """The directories the unit creates are the ones the config uses; minfds is the soft
    LimitNOFILE, so programs inherit what the comments say."""
    unit = read_unit(AGENT_UNIT)
    sections = read_ini(AGENT_EXAMPLE.read_text(), str(AGENT_EXAMPLE))
    opt = lambda s, k: sections[s].options[k].text  # noqa: E731
    state = "/var/lib/" + one(unit, "Service", "StateDirectory")
    logs = "/var/log/" + one(unit, "Service", "LogsDirectory")
    run = "/run/" + one(unit, "Service", "RuntimeDirectory")
    assert opt("fleetvisor", "state_dir") == state
    assert opt("supervisord", "childlogdir") == logs
    assert Path(opt("supervisord", "logfile")).parent == Path(logs)
    assert Path(opt("unix_http_server", "file")).parent == Path(run)
    assert Path(opt("supervisord", "pidfile")).parent == Path(run)
    soft = one(unit, "Service", "LimitNOFILE").split(":")[0]
    assert opt("supervisord", "minfds") == soft
    assert "-c /etc/fleetvisor/agent.conf" in one(unit, "Service", "ExecStart")


def test_controller_readme_agent_snippet_matches_the_example():
    example = {line.split(";")[0].strip() for line in AGENT_EXAMPLE.read_text().splitlines()}
    (snippet,) = fenced(CONTROLLER_EXAMPLES / "README.md", "ini")
    for line in snippet.strip().splitlines():
        assert line.strip() in example, f"README shows {line!r}, agent.conf does not have it"


# -- the systemd units --------------------------------------------------------------------

# The agent's programs outlive an agent crash (its ledger stops them at the next start); the
# controller's one child, an embedded etcd, is killed if the controller leaves it behind.
@pytest.mark.parametrize("path, script, kill_mode", [(AGENT_UNIT, "fleetvisor-agent", "process"),
                                                     (CONTROLLER_UNIT, "fleetvisor-controller", "mixed")])
def test_units_parse_and_run_an_installed_entry_point(path, script, kill_mode):
    unit = read_unit(path)
    assert list(unit) == ["Unit", "Service", "Install"]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert one(unit, "Service", "Type") == "exec"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "KillMode") == kill_mode
    binary = Path(one(unit, "Service", "ExecStart").split()[0])
    assert binary.name == script
    assert binary.parent == Path("/opt/fleetvisor/bin")
    assert script in project_scripts()


def test_agent_unit_runs_in_the_foreground_as_root_without_sandboxing_its_children():
    unit = read_unit(AGENT_UNIT)["Service"]
    argv = unit["ExecStart"][0].split()
    assert "-n" in argv
    assert "User" not in unit and "DynamicUser" not in unit
    # Each of these would be inherited by every program the agent runs.
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "CapabilityBoundingSet", "SystemCallFilter", "RestrictAddressFamilies",
                "MemoryDenyWriteExecute", "RestrictSUIDSGID", "OOMScoreAdjust"):
        assert key not in unit, f"{key} would restrict the agent's programs"
    assert unit["TasksMax"] == ["infinity"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_controller_unit_is_sandboxed():
    unit = read_unit(CONTROLLER_UNIT)["Service"]
    expected = {"DynamicUser": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
                "StateDirectory": "fleetvisor-controller", "ProtectHome": "yes",
                "PrivateDevices": "yes", "RestrictNamespaces": "yes",
                "EnvironmentFile": "-/etc/fleetvisor/controller.env"}
    for key, value in expected.items():
        assert unit.get(key) == [value], f"{key}={unit.get(key)}"
    assert "@system-service" in unit["SystemCallFilter"]
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_controller_unit_loads_every_credential_it_uses():
    unit = read_unit(CONTROLLER_UNIT)["Service"]
    credentials = "/run/credentials/fleetvisor-controller.service"
    used = set(re.findall(r"%d/([\w.-]+)", unit["ExecStart"][0]))
    for n in HOSTS:  # the env files name the etcd credentials by their full path
        env = read_env_file(CONTROLLER_EXAMPLES / f"ctl-{n}.env")
        used |= set(re.findall(rf"{credentials}/([\w.-]+)", env["FLEETVISOR_CONTROLLER_ARGS"]))
    loaded = {}
    for value in unit["LoadCredential"]:
        name, _, source = value.partition(":")
        loaded[name] = source
        assert source.startswith("/etc/fleetvisor/controller/"), value
    assert used == set(loaded)
    # the etcd ones are optional (an embedded etcd needs none): each has a fallback
    optional = {value.partition(":")[0]: value.partition(":")[2] for value in unit["SetCredential"]}
    assert optional == {"etcd-ca.pem": "absent", "etcd.pem": "absent", "etcd.key": "absent"}
    argv = parse_args(controller_argv(CONTROLLER_EXAMPLES / "ctl-1.env", credentials)[0][1:])
    assert argv.state_dir == "/var/lib/" + unit["StateDirectory"][0]
    assert (argv.tls_cert, argv.tls_key, argv.tls_ca) == tuple(f"{credentials}/{name}"
                                                               for name in ("tls.pem", "tls.key", "ca.pem"))
    assert tuple(map(str, (argv.etcd_ca, argv.etcd_cert, argv.etcd_key))) == \
        tuple(f"{credentials}/{name}" for name in ("etcd-ca.pem", "etcd.pem", "etcd.key"))


def test_controller_unit_without_env_file_runs_an_embedded_etcd():
    unit = read_unit(CONTROLLER_UNIT)["Service"]
    assert unit["EnvironmentFile"] == ["-/etc/fleetvisor/controller.env"]
    words = [w for w in one(read_unit(CONTROLLER_UNIT), "Service", "ExecStart").split()
             if w != "$FLEETVISOR_CONTROLLER_ARGS"]  # unset: no word at all
    args = parse_args([w.replace("%d", "/CRED") for w in words[1:]])
    assert args.etcd == "embedded" and args.etcd_ca is None
    template = read_env_file(CONTROLLER_EXAMPLES / "controller.env")
    assert template == {}, "the template is all comments: installing it as is keeps the embedded etcd"


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    copies = []
    for path, script in ((AGENT_UNIT, "fleetvisor-agent"), (CONTROLLER_UNIT, "fleetvisor-controller")):
        installed = installed_script(script)
        if installed is None:
            pytest.skip(f"{script} is not installed here (verify checks that ExecStart exists)")
        copy = tmp_path / path.name
        # Same unit, pointed at this checkout's installed entry point instead of /opt/fleetvisor.
        copy.write_text(path.read_text().replace(f"/opt/fleetvisor/bin/{script}", installed))
        copies.append(str(copy))
    result = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=60)
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "fleetvisor" in line or str(tmp_path) in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


# -- the controller and etcd examples -----------------------------------------------------

def test_controller_flags_are_accepted_by_the_controllers_parser():
    for n in HOSTS:
        argv, env = controller_argv(CONTROLLER_EXAMPLES / f"ctl-{n}.env")
        args = parse_args(argv[1:])  # argparse exits (SystemExit) on an unknown or bad flag
        assert args.id == f"ctl-{n}"
        assert args.cluster == "prod"
        assert args.advertise == f"10.0.0.{n}:7400"
        assert args.listen.rpartition(":")[2] == args.advertise.rpartition(":")[2]
        assert bool(args.etcd_user) == bool(env.get("FLEETVISOR_ETCD_PASSWORD"))


def test_the_parser_check_can_fail():
    with pytest.raises(SystemExit):
        parse_args(["--no-such-flag"])
    with pytest.raises(SystemExit):
        parse_args(["--tls-cert", "a.pem"])  # the other two TLS files missing
    with pytest.raises(SystemExit):
        parse_args(["--etcd-ca", "ca.pem"])  # the embedded etcd is plaintext: the unit's old failure


def test_controller_commands_in_the_docs_are_accepted():
    lines = []
    for doc in DEPLOY.rglob("*.md"):
        for block in fenced(doc, "sh"):
            for line in block.replace("\\\n", " ").splitlines():
                if line.split() and Path(line.split()[0]).name == "fleetvisor-controller":
                    lines.append(shlex.split(line, comments=True)[1:])
    assert lines, "the docs show no fleetvisor-controller command line"
    for argv in lines:
        if "--help" in argv:
            with pytest.raises(SystemExit) as exc:
                parse_args(argv)
            assert exc.value.code == 0
        else:
            parse_args(argv)


def test_controllers_name_every_etcd_member_their_own_first():
    clients = {n: host_port(etcd_member(n)["ETCD_ADVERTISE_CLIENT_URLS"]) for n in HOSTS}
    for n in HOSTS:
        args = parse_args(controller_argv(CONTROLLER_EXAMPLES / f"ctl-{n}.env")[0][1:])
        endpoints = args.etcd.split(",")
        assert sorted(endpoints) == sorted(clients.values())
        assert endpoints[0] == clients[n]


def test_etcd_members_form_one_tls_cluster():
    members = {n: etcd_member(n) for n in HOSTS}
    clusters = {m["ETCD_INITIAL_CLUSTER"] for m in members.values()}
    assert len(clusters) == 1
    initial = dict(item.split("=", 1) for item in clusters.pop().split(","))
    assert set(initial) == {f"etcd-{n}" for n in HOSTS}
    for n, m in members.items():
        assert m["ETCD_NAME"] == f"etcd-{n}"
        assert initial[m["ETCD_NAME"]] == m["ETCD_INITIAL_ADVERTISE_PEER_URLS"]
        urls = [u for k, v in m.items() if k.endswith("_URLS") for u in v.split(",")]
        assert urls and all(u.startswith("https://") for u in urls), urls
        assert m["ETCD_CLIENT_CERT_AUTH"] == m["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
        assert m["ETCD_CERT_FILE"] == m["ETCD_PEER_CERT_FILE"] == f"/etc/etcd/pki/etcd-{n}.pem"
        assert m["ETCD_KEY_FILE"] == m["ETCD_PEER_KEY_FILE"] == f"/etc/etcd/pki/etcd-{n}.key"
        assert m["ETCD_TRUSTED_CA_FILE"] == m["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/etcd/pki/ca.pem"
        assert m["ETCD_DATA_DIR"] != "/var/lib/etcd/default"  # the packaged single-node cluster's


def test_etcd_variables_are_flags_of_the_installed_etcd():
    etcd = shutil.which("etcd")
    if etcd is None:
        pytest.skip("etcd is not installed on this machine")
    help_text = subprocess.run([etcd, "--help"], capture_output=True, text=True, timeout=30)
    flags = set(re.findall(r"--([a-z0-9-]+)", help_text.stdout + help_text.stderr))
    assert "initial-cluster" in flags
    for n in HOSTS:
        for key in etcd_member(n):
            flag = key.removeprefix("ETCD_").lower().replace("_", "-")
            assert flag in flags, f"etcd-{n}.default: {key} is not an etcd flag (--{flag})"


# -- the TLS walkthrough ------------------------------------------------------------------

def tls_commands() -> list[list[str]]:
    """The `fleetctl certs init|issue` lines (revoke talks to a controller: not run here)."""
    commands = []
    for block in fenced(TLS_DOC, "sh"):
        for line in block.splitlines():
            if line.split()[:2] == ["fleetctl", "certs"] and line.split()[2] in ("init", "issue"):
                commands.append(shlex.split(line, comments=True)[2:])
    return commands


def sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
            | set(names.get_values_for_type(x509.DNSName)))


def sans_uris(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:  # the CA
        return []
    return names.get_values_for_type(x509.UniformResourceIdentifier)


def test_tls_walkthrough_commands_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = tls_commands()
    assert len(commands) >= 8
    runner = CliRunner()
    for argv in commands:
        result = runner.invoke(certs, argv)
        assert result.exit_code == 0, f"fleetctl certs {' '.join(argv)}: {result.output}"
    # Every pki file the placement table names was made by the commands above.
    table = []
    for name in re.findall(r"`(pki(?:-etcd)?/[\w.-]+\.(?:pem|key|\*))`", TLS_DOC.read_text()):
        table += [name[:-1] + "pem", name[:-1] + "key"] if name.endswith("*") else [name]
    assert "pki-etcd/etcd-admin.key" in table
    for name in table:
        assert (tmp_path / name).is_file(), f"TLS.md places {name}, which its commands do not make"
    for key in tmp_path.glob("pki*/*.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    # Certificates name the addresses the other examples dial them by.
    for n in HOSTS:
        advertise = parse_args(controller_argv(CONTROLLER_EXAMPLES / f"ctl-{n}.env")[0][1:]).advertise
        assert advertise.rpartition(":")[0] in sans(tmp_path / "pki" / f"ctl-{n}.pem")
        member = etcd_member(n)
        member_sans = sans(tmp_path / "pki-etcd" / f"etcd-{n}.pem")
        for key in ("ETCD_ADVERTISE_CLIENT_URLS", "ETCD_INITIAL_ADVERTISE_PEER_URLS", "ETCD_LISTEN_CLIENT_URLS"):
            for url in member[key].split(","):
                host = host_port(url).rpartition(":")[0]
                assert host in member_sans, f"etcd-{n}.pem lacks {host} ({key})"
    # Fleet certificates carry the role and name they are placed as, for the controllers' cluster;
    # etcd's carry none.
    cluster = parse_args(controller_argv(CONTROLLER_EXAMPLES / "ctl-1.env")[0][1:]).cluster
    roles = {}
    for pem in (tmp_path / "pki").glob("*.pem"):
        if pem.name != "ca.pem":
            who = from_pem(pem.read_bytes())
            assert (who.name, who.cluster) == (pem.stem, cluster), pem.name
            roles[pem.stem] = (who.role, sorted(who.groups))
    assert roles == {**{f"ctl-{n}": ("controller", []) for n in HOSTS}, "web-1": ("agent", []),
                     "alice": ("operator", ["admins"]), "bob": ("viewer", [])}
    for pem in (tmp_path / "pki-etcd").glob("*.pem"):
        assert not any(str(u).startswith("fleetvisor:") for u in sans_uris(pem)), pem.name
    # Operators' certificates are client-only; the fleet CA and the etcd CA differ.
    alice = x509.load_pem_x509_certificate((tmp_path / "pki" / "alice.pem").read_bytes())
    usage = alice.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH not in usage
    assert (tmp_path / "pki" / "ca.pem").read_bytes() != (tmp_path / "pki-etcd" / "ca.pem").read_bytes()


def test_tls_rpc_table_lists_every_rpc_with_its_verb():
    """TLS.md's role x RPC table: a row per RPC of both services, with the verb rules.py gives it."""
    rows = re.findall(r"^\| `(\w+)\.(\w+)` \| (\w+) \|", TLS_DOC.read_text(), re.M)
    documented = {(service, method): verb for service, method, verb in rows}
    assert len(documented) == len(rows), "an RPC is listed twice"
    expected = {(service.rpartition(".")[2], method): verb for service, rules in RULES.items()
                for method, verb in rules.items()}
    assert documented == expected


def test_tls_walkthrough_fleetctl_file_has_known_settings():
    from fleetvisor.cli.settings import KEYS
    (block,) = fenced(TLS_DOC, "toml")
    data = tomllib.loads(block)
    assert set(data) == {"controller", "tls_cert", "tls_key", "tls_ca"} <= set(KEYS)
    assert all(Path(data[k]).is_absolute() for k in ("tls_cert", "tls_key", "tls_ca"))
    from fleetvisor.cli.controllers import parse_list
    advertised = [parse_args(controller_argv(CONTROLLER_EXAMPLES / f"ctl-{n}.env")[0][1:]).advertise
                  for n in (1, 2, 3)]
    assert parse_list(data["controller"], "controller") == tuple(advertised)  # every controller, as each says


# -- the container image ------------------------------------------------------------------

DOCKER_PATHS = {"/etc/fleetvisor": "etc", "/var/log/fleetvisor": "log",
                "/run/fleetvisor": "run", "/var/lib/fleetvisor": "lib"}


def test_docker_agent_conf_parses_alone_and_joined_to_a_fleet(tmp_path):
    base = tmp_path / "agent.conf"
    base.write_text(rewrite((DOCKER / "agent.conf").read_text(), tmp_path, DOCKER_PATHS))
    (tmp_path / "etc" / "conf.d").mkdir()
    alone = load(str(base), environ={})
    assert alone.supervisord.nodaemon is True
    assert alone.fleetvisor is not None and alone.fleetvisor.state_dir == str(tmp_path / "lib")
    assert alone.fleetvisor.grpc_listen is None

    (snippet,) = fenced(DOCKER / "README.md", "ini")
    (tmp_path / "etc" / "tls").mkdir()
    fake_tls(tmp_path / "etc" / "tls", "web-1")
    (tmp_path / "etc" / "conf.d" / "fleet.conf").write_text(rewrite(snippet, tmp_path, DOCKER_PATHS))
    joined = load(str(base), environ={}).fleetvisor
    assert joined.state_dir == str(tmp_path / "lib")  # kept from the image's file
    assert joined.node == "web-1" and joined.grpc_listen == ("0.0.0.0", 7401)
    assert len(joined.controllers) == 3 and joined.tls_ca is not None


def test_dockerfile_copies_what_exists_and_runs_the_agent_under_tini():
    text = (DOCKER / "Dockerfile").read_text()
    instructions = [line for line in text.replace("\\\n", " ").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    copies = [line.split()[1:] for line in instructions if line.startswith("COPY ")]
    assert copies
    for *sources, _target in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    for package_dir in ("agent", "controller", "cli", "proto"):
        assert any(f"{package_dir}/" in sources for *sources, _ in copies), package_dir
    entrypoint = next(line for line in instructions if line.startswith("ENTRYPOINT "))
    cmd = next(line for line in instructions if line.startswith("CMD "))
    assert json.loads(entrypoint.split(None, 1)[1]) == ["/usr/bin/tini", "--"]  # exec form
    argv = json.loads(cmd.split(None, 1)[1])
    assert argv[0] in project_scripts() and argv[0] == "fleetvisor-agent"
    assert "-n" in argv
    config = argv[argv.index("-c") + 1]
    assert ["deploy/docker/agent.conf", config] in copies
    assert 'VOLUME ["/var/lib/fleetvisor"]' in instructions
    assert "tini" in next(line for line in instructions if "apt-get install" in line)


def test_docker_readme_says_the_image_is_not_built_in_ci():
    assert "Not built in CI" in (DOCKER / "README.md").read_text()


def test_example_addresses_are_documentation_addresses():
    """The examples use 10.0.0.0/24 throughout; a stray real-looking address would be a typo."""
    for path in [AGENT_EXAMPLE, *CONTROLLER_EXAMPLES.iterdir(), TLS_DOC, DOCKER / "README.md"]:
        for ip in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", path.read_text()):
            addr = ipaddress.ip_address(ip)
            assert addr in ipaddress.ip_network("10.0.0.0/24") or addr.is_loopback or \
                addr.is_unspecified, f"{path.name}: {ip}"
