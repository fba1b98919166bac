"""Every option the three programs' --help shows has a line in README.md: a new user reads the
README first, and an option found only by running --help is one the README forgot."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fleetvisor.agent.main import USAGE
from fleetvisor.cli.main import cli
from fleetvisor.controller.main import parse_args

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def documented(option: str) -> bool:
    return re.search(re.escape(option) + r"(?![\w-])", README) is not None


def agent_options() -> set[str]:
    return {o for o in re.findall(r"(?m)(?:^|/)(--?[a-z][\w-]*)", USAGE) if o not in ("-h", "--help")}


def controller_options() -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        parse_args(["--help"])
    return {o for o in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", out.getvalue().split("examples:")[0])
            if o not in ("-h", "--help")}


def fleetctl_options() -> set[str]:
    found: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            if isinstance(param, click.Option):
                found.update(o for o in param.opts + param.secondary_opts if o not in ("-h", "--help"))
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)
    walk(cli)
    return found


@pytest.mark.parametrize("program, options", [("fleetvisor-agent", agent_options),
                                              ("fleetvisor-controller", controller_options),
                                              ("fleetctl", fleetctl_options)])
def test_every_option_in_help_is_in_the_readme(program, options):
    found = options()
    assert len(found) > 10, f"{program}: the option scan found too little: {found}"
    missing = sorted(o for o in found if not documented(o))
    assert not missing, f"{program} --help options missing from README.md: {missing}"


def test_the_check_can_fail():
    assert not documented("--no-such-option")
    assert documented("--leader-ttl") and not documented("--leader")  # whole options only


def test_fleetctl_help_names_its_config_variable_and_the_documented_ports():
    """Controllers listen on 7400, agents on 7401 (deploy/examples): every example agrees."""
    text = CliRunner().invoke(cli, ["--help"]).output
    assert "FLEETCTL_CONFIG" in text

    def helps(command: click.Command) -> list[str]:
        found = [command.help or ""]
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                found += helps(sub)
        return found
    every = "\n".join([text, *helps(cli)])
    ports = re.findall(r"--(controller|node) [\d.]+:(\d+)", every)
    assert len(ports) > 5
    wrong = [(kind, port) for kind, port in ports if port != {"controller": "7400", "node": "7401"}[kind]]
    assert not wrong, wrong
