"""`-o/--output` wherever people type it: before the command (`fleetctl -o json nodes`) or after
it (`fleetctl nodes -o json`, `fleetctl config list --output json`), as kubectl and nomad take it.

One option, declared here: the top-level group reads it into `Ctx.output`, and `OutputGroup`
gives every command and subgroup added to it the same option, which overrides what came before
(the last one typed wins). No command declares it itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .context import Ctx

FORMATS = click.Choice(["table", "json"])
HELP = "Print a table for people or JSON for programs (also accepted after the command name)."

F = TypeVar("F", bound=Callable[..., Any])  # a command's function, as option decorators take and return it


def output_option() -> Callable[[F], F]:
    """The top-level option: its value goes to the group's callback, which builds the Ctx."""
    return click.option("--output", "-o", type=FORMATS, default="table", show_default=True, help=HELP)


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # The parent group's callback has built the Ctx before a subcommand parses its arguments.
    obj = ctx.find_object(Ctx)
    if value is not None and obj is not None:
        obj.output = value


def _accept_output(command: click.Command) -> None:
    """Give `command` (and, for a group, everything already in it) the trailing option."""
    if not any(param.name == "output" for param in command.params):
        command.params.append(click.Option(["--output", "-o"], type=FORMATS, expose_value=False,
                                           callback=_set_output, help=HELP))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_output(sub)


class OutputGroup(click.Group):
    """A group whose commands, however they were made or added, take -o/--output after their name."""

    group_class = type  # groups made with @group.group() are OutputGroups as well

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        _accept_output(cmd)
        super().add_command(cmd, name)
