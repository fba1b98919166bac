"""What every fleetctl command gets: settings, output format, and which mode it runs in.

Mode is decided here, once, so the commands that exist in both modes (status, start, stop,
restart, signal, tail, config show) only branch on `obj.mode`:

- `--node` on the command line: per-node mode, straight to that agent;
- else a controller, or a list of them (flag, FLEETCTL_CONTROLLER, or the config file): fleet mode;
- else a node from FLEETCTL_NODE or the config file: per-node mode;
- else a usage error naming both options.
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

import grpc
from google.protobuf.message import Message

from fleetvisor.v1 import agent_pb2_grpc as pb_grpc
from fleetvisor.v1 import controller_pb2 as ctl_pb
from fleetvisor.v1 import controller_pb2_grpc as ctl_grpc

from . import render
from .client import USER_KEY, CommandError, Controller, channel, describe_rpc_error, local_identity
from .controllers import Memory
from .exitcodes import USAGE
from .settings import Settings

NO_TARGET = ("no node given and no controller: pass --controller HOST:PORT (the fleet) or --node HOST:PORT "
             "(one agent), or set FLEETCTL_CONTROLLER / FLEETCTL_NODE or controller= / node= in the "
             "fleetctl config file")


class Mode(enum.Enum):
    NODE = "node"
    FLEET = "fleet"


def choose_mode(node_flag: str | None, settings: Settings) -> Mode:
    """Per-node when --node is on the command line, else the controller if one is known at
    all, else a node from the environment or file: an explicit flag beats a standing default."""
    if node_flag:
        return Mode.NODE
    if settings.controllers:
        return Mode.FLEET
    if settings.node:
        return Mode.NODE
    raise CommandError(NO_TARGET, USAGE)


@dataclass
class Ctx:
    settings: Settings
    output: str
    node_flag: str | None = None
    _controller: Controller | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.output == "json"

    @property
    def mode(self) -> Mode:
        return choose_mode(self.node_flag, self.settings)

    def node(self) -> str:
        """The agent for per-node calls; with only a controller known, say that this verb is per-node."""
        if not self.settings.node:
            if self.settings.controllers:
                raise CommandError("this command talks to one agent: pass --node HOST:PORT (or set FLEETCTL_NODE, "
                                   "or node= in the fleetctl config file)", USAGE)
            raise CommandError(NO_TARGET, USAGE)
        return self.settings.node

    def controller(self, command: str = "") -> Controller:
        """The controller client; fleet-only commands use it whatever --node says."""
        if not self.settings.controllers:
            what = f"`fleetctl {command}` talks to the controller" if command else "this needs the controller"
            raise CommandError(f"{what}: pass --controller HOST:PORT[,HOST:PORT...] (or set FLEETCTL_CONTROLLER, "
                               "or controller= in the fleetctl config file)", USAGE)
        if self._controller is None:
            self._controller = Controller(self.settings.controllers, self.settings, memory=Memory())
        return self._controller

    def call(self, method: str, request: Message, *, stream: bool = False, timeout: float | None = None) -> Any:
        """Call AgentService.method on the node; transport errors become CommandError."""
        target = self.node()
        chan = channel(target, self.settings)
        stub = pb_grpc.AgentServiceStub(chan)
        try:
            result = getattr(stub, method)(request, timeout=timeout or self.settings.timeout,
                                           metadata=((USER_KEY, local_identity()),))
            return (result, chan) if stream else result
        except grpc.RpcError as exc:
            raise self.node_error(exc, chan) from None
        finally:
            if not stream:
                chan.close()

    def node_error(self, exc: grpc.RpcError, chan: grpc.Channel) -> CommandError:
        """An AgentService call's failure in one line. A server without AgentService answers
        UNIMPLEMENTED ("Method not found!"); the usual reason is a controller's address given to
        --node, so the same channel asks whether ControllerService answers there."""
        target = self.node()
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            if _is_controller(chan, min(self.settings.timeout, 5.0)):
                return CommandError(f"{target} is a fleetvisor controller, not an agent; use --controller {target}",
                                    USAGE)
            return CommandError(f"{target} does not serve fleetvisor's AgentService: is it an agent's grpc_listen "
                                "address?", USAGE)
        return describe_rpc_error(exc, target, tls=self.settings.tls, cert=self.settings.tls_cert)


def _is_controller(chan: grpc.Channel, timeout: float) -> bool:
    """Whether ControllerService is served on `chan`: any answer but UNIMPLEMENTED (a refusal
    for this certificate included) says it is."""
    try:
        ctl_grpc.ControllerServiceStub(chan).GetLeader(ctl_pb.GetLeaderRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code() not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.DEADLINE_EXCEEDED)
    return True


P = ParamSpec("P")


def run_command(fn: Callable[P, int | None]) -> Callable[P, None]:
    """Every command: errors are one line on stderr and an exit status, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            code = fn(*args, **kwargs) or 0
        except CommandError as exc:
            render.err.print(f"[red]error:[/] {render.escape(str(exc))}", markup=True)
            code = exc.exit_code
        except KeyboardInterrupt:
            code = 130
        sys.exit(code)
    return wrapper


def node_only(obj: Ctx, command: str, **fleet_options: object) -> None:
    """Refuse fleet-only options in per-node mode with a line that says why."""
    for option, value in fleet_options.items():
        if value:
            raise CommandError(f"{option} works in fleet mode only, and `fleetctl {command}` runs in per-node "
                               "mode here (a node is given by --node, FLEETCTL_NODE or node=)", USAGE)
