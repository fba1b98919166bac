"""fleetctl's arguments: random argv for every command.

Parsing alone (a pure unit: click's contexts are made, no command runs) either succeeds or is a
usage error. Whole runs against a real controller, in process (fewer examples): the exit status
is one cli/exitcodes.py documents, an error is one "error:" line on stderr (a failure of some
processes is their results on stdout), and nothing prints a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetvisor.cli import exitcodes
from fleetvisor.cli.main import cli, main
from tests.controller.etcd_harness import EtcdServer
from tests.controller.fleet_harness import Agent, Controller, states, wait_status
from tests.support import free_port

from .fleet_strategies import HUGE_TEXT, NAMES, TEXT, budget


def leaves(command: click.Command = cli, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    if not isinstance(command, click.Group):
        return [(path, command)]
    return [leaf for name, sub in sorted(command.commands.items()) for leaf in leaves(sub, (*path, name))]


COMMANDS = leaves()
VALUES = st.one_of(
    st.sampled_from(["", "0", "-1", "1", "3", "1e400", "nan", "inf", "-inf", "9" * 30, "1h", "30s", "2d", "-5m",
                     "10%", "150%", "%", "a=b", "=b", "a=", "role=web", "a=1,b=2", "web-1", "web-1:app", "*:*",
                     "web-*:app:*", ":app", "web-1:", "all", "HUP", "SIGKILL", "0x10", "json", "table", "pause",
                     "abort", "continue", "operator", "viewer", "agent", "--", "-", "-o", "--help", "é"]),
    NAMES, TEXT, HUGE_TEXT.map(lambda t: t[:5000])).map(lambda v: v.replace("\x00", ""))  # exec's argv has no NUL
GLOBAL = st.lists(st.one_of(st.just(["-o", "json"]), st.just(["--output", "table"]),
                            VALUES.map(lambda v: ["--timeout", v]), VALUES.map(lambda v: ["--output", v])),
                  max_size=2).map(lambda groups: [t for g in groups for t in g])
ALLOWED = {0, exitcodes.EXIT_GENERIC, exitcodes.USAGE, exitcodes.STATUS_NOT_RUNNING, exitcodes.STATUS_UNKNOWN,
           exitcodes.EXIT_NOT_RUNNING}


# what the fleet of the real runs has: most arguments get past parsing and reach the controller
REAL_VALUES = st.sampled_from(["web-1", "web-1:app", "*:app", "web-*", "all", "app", "role=web", "role=db", "1",
                               "0", "2", "30s", "1h", "50%", "pause", "abort", "read", "control", "ops", "alice",
                               "HUP", "USR1", "4a3f09c1", "nosuch", "web-1:nosuch", "*:*", "-1", "x"])
REAL_GLOBAL = st.sampled_from([[], ["-o", "json"], ["--timeout", "10"], ["--timeout", "0"]])


def tokens(command: click.Command, values: st.SearchStrategy[str] = VALUES) -> st.SearchStrategy[list[str]]:
    """Random arguments for `command`: its own options (with random values), positionals, junk."""
    groups: list[st.SearchStrategy[list[str]]] = [values.map(lambda v: [v])]
    for param in command.params:
        if isinstance(param, click.Option) and (values is VALUES or param.name != "output"):
            names = st.sampled_from(param.opts + param.secondary_opts)
            groups.append(names.map(lambda n: [n]) if param.is_flag else st.tuples(names, values).map(list))
    return st.lists(st.one_of(*groups), max_size=5).map(lambda gs: [t for g in gs for t in g])


def positionals(command: click.Command, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """A value for each of the command's arguments (one or two where it takes several) and
    required options."""
    each = [st.lists(values, min_size=1, max_size=1 if p.nargs == 1 else 2)
            for p in command.params if isinstance(p, click.Argument)]
    each += [values.map(lambda v, opt=p.opts[0]: [opt, v])  # type: ignore[misc]
             for p in command.params if isinstance(p, click.Option) and p.required]
    return st.tuples(*each).map(lambda lists: [v for values in lists for v in values])


def argv(path: tuple[str, ...], command: click.Command, real: bool = False) -> st.SearchStrategy[list[str]]:
    if not real:
        return st.builds(lambda head, rest: [*head, *path, *rest], GLOBAL, tokens(command))
    return st.builds(lambda head, args, rest: [*head, *path, *args, *rest], REAL_GLOBAL,
                     positionals(command, REAL_VALUES), tokens(command, REAL_VALUES))


# -- parsing alone -----------------------------------------------------------------------------------

def parse(args: list[str]) -> None:
    """Make the contexts of the command `args` name, as click does before running it."""
    ctx = cli.make_context("fleetctl", list(args))
    while isinstance(ctx.command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return
        name, sub, remaining = ctx.command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, remaining, parent=ctx)


@pytest.mark.parametrize("path, command", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_parsing_succeeds_or_is_a_usage_error(path, command):
    @settings(max_examples=budget(60))
    @given(argv(path, command))
    def check(args):
        try:
            parse(args)
        except click.exceptions.Exit as exit_:  # --help
            assert exit_.exit_code == 0
        except click.ClickException as exc:
            assert exc.exit_code in (exitcodes.EXIT_GENERIC, exitcodes.USAGE), args
            assert exc.format_message()
    check()


# -- whole runs against a real controller ------------------------------------------------------------

# Watching and following wait for more until interrupted; certs writes files: not here.
BLOCKING = {"--watch", "-w", "-f", "--follow"}
REAL = [(path, command) for path, command in COMMANDS if path[0] != "certs" and path != ("ops", "watch")]


class FuzzFleet:
    def __init__(self, base: Path) -> None:
        self.etcd = EtcdServer(base)
        self.etcd.start()
        self.ctl = Controller(base, self.etcd.endpoint)
        self.agent = Agent(base, "web-1", [self.ctl.address], labels="role=web")
        wait_status(self.ctl, lambda s: states(s).get("web-1:app") == "RUNNING", what="web-1 running")
        self.base = base

    def close(self) -> None:
        self.agent.stop()
        self.ctl.stop()
        self.etcd.kill()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = FuzzFleet(tmp_path_factory.mktemp("fuzz-fleetctl"))
    yield f
    f.close()


def run(args: list[str], base: Path) -> tuple[int, str, str]:
    """fleetctl's own main() in this process, with its streams captured."""
    clean = {key: None for key in os.environ if key.startswith("FLEETCTL_")}
    runner = CliRunner(env={**clean, "FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml", "COLUMNS": "120"})
    code: object = 0
    cwd = os.getcwd()
    with runner.isolation() as (out, err, _):
        os.chdir(base)  # what a command writes by a relative name stays in the test's directory
        argv, sys.argv = sys.argv, ["fleetctl", *args]
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.argv = argv
            os.chdir(cwd)
            sys.stdout.flush()
            sys.stderr.flush()
        return (code if isinstance(code, int) else 1), out.getvalue().decode(errors="replace"), \
            err.getvalue().decode(errors="replace")


def detached(path: tuple[str, ...], args: list[str]) -> list[str]:
    """A rolling push or restart waits for its operation unless detached."""
    kept = [a for a in args if a not in BLOCKING]
    return [*kept, "--detach"] if path in (("rolling-restart",), ("config", "push")) else kept


@pytest.mark.parametrize("path, command", REAL, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_runs_end_with_a_documented_status_and_one_error_line(fleet, path, command):
    @settings(max_examples=budget(12))
    @given(st.one_of(argv(path, command, real=True), argv(path, command)))
    @example(["--timeout", "nan", *path])
    def check(args):
        args = ["--controller", fleet.ctl.address, *detached(path, args)]
        code, out, err = run(args, fleet.base)
        assert "Traceback" not in out + err, (args, out, err)
        assert code in ALLOWED, (args, code, out, err)
        lines = [line for line in err.splitlines() if line.strip()]
        if code and lines and "Usage:" not in err:  # a bare group shows its help, as click does
            assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        if not code:  # a success may say something on stderr (how long a login link is valid), never an error
            assert not any(line.startswith("error: ") for line in lines), (args, err)
        if code:  # why: the error line, or the results (of each node and process) that failed
            assert lines or out.strip(), (args, code)
    check()


def test_a_closed_port_is_no_answer(tmp_path):
    code, _, err = run(["--controller", f"127.0.0.1:{free_port()}", "--timeout", "2", "leader"], tmp_path)
    assert code == exitcodes.STATUS_UNKNOWN and err.startswith("error: ")
