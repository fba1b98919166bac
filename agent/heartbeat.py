"""Fleet membership: the agent announces itself to a controller and keeps its lease alive.

Heartbeats go to one controller of `[fleetvisor] controllers=` at the interval that controller
answers. Each node starts at a place in the list of its own, chosen by its name (`home`), so
that a fleet's heartbeats share the controllers, and a node comes back to the same one at every
start. A failed call moves on to the next controller of the list at once; when every one has
failed in a row the agent keeps its programs running (a controller is never needed to
supervise), says so once in the main log and retries with capped exponential backoff. The
choice of controller and the timing are in `Schedule`, which takes the clock and the random
source as arguments so that it is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc

from . import operations
from .caller import LOCAL
from .config.model import FleetvisorConfig
from .mainlog import MainLog
from .security.policy import PolicyError
from .security.wire import state_from_pb
from .timeouts import wait_within

if TYPE_CHECKING:
    from .grpcapi.server import GrpcFace
    from .security.keeper import Keeper
    from .security.tlsfiles import TlsMaterial

DEFAULT_INTERVAL = 3.0   # until a controller says otherwise
MIN_INTERVAL = 0.05      # a controller answering 0.001 must not turn this into a busy loop
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
JITTER = 0.25            # a delay is shortened by up to this fraction, so a fleet does not retry in step
CALL_TIMEOUT = 5.0       # a blackholed controller must not hold the heartbeat longer than this
_LAST_ERROR = re.compile(r"last error: [A-Z_]+: (?:ipv[46]:\S+: )?(.+)")
ANSWERED_METADATA = "fleetvisor-controller"  # set by a controller on the errors it answers itself


class Transition(enum.Enum):
    """What an attempt changed that the main log should say (once, not per attempt)."""

    NONE = "none"
    REGISTERED = "registered"      # first success, failover, or back after being cut off
    UNREACHABLE = "unreachable"    # every controller of the list has just failed in a row


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def home(node: str, controllers: int) -> int:
    """Where in the list of `controllers` a node starts: the same for a name at every start."""
    return zlib.crc32(node.encode()) % controllers


@dataclass
class Schedule:
    """Which controller to call next and when; sticks to the one that answers.

    Times are in the units of `clock` (monotonic seconds). `rand` returns [0, 1).
    """

    controllers: tuple[str, ...]
    clock: Callable[[], float] = time.monotonic
    rand: Callable[[], float] = random.random
    first_backoff: float = FIRST_BACKOFF
    max_backoff: float = MAX_BACKOFF
    jitter: float = JITTER
    interval: float = DEFAULT_INTERVAL
    index: int = 0
    failures: int = 0                 # consecutive failed attempts, over all controllers
    attempts: int = 0
    registered: str | None = None     # who answered last, None while cut off
    urgent: bool = False              # something to tell arrived during an attempt
    next_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.controllers:
            raise ValueError("no controllers to heartbeat to")
        self.next_at = self.clock()

    @property
    def current(self) -> str:
        return self.controllers[self.index]

    @property
    def unreachable(self) -> bool:
        return self.failures >= len(self.controllers)

    def due(self) -> float:
        """Seconds until the next attempt (0: now)."""
        return max(0.0, self.next_at - self.clock())

    def hurry(self) -> None:
        """Send now rather than at the next interval (a revision was applied). Also heard
        while an attempt is in flight: that attempt carried the old news."""
        self.urgent = True
        self.next_at = min(self.next_at, self.clock())

    def started(self) -> None:
        """An attempt is being built now: it carries whatever `hurry` was for."""
        self.urgent = False
        self.attempts += 1

    def succeeded(self, interval: float) -> Transition:
        """`interval` is the controller's interval_seconds; 0 (unset) keeps the last one."""
        if interval > 0:
            self.interval = max(MIN_INTERVAL, interval)
        previous, self.registered = self.registered, self.current
        self.failures = 0
        self._next(self.interval)
        return Transition.REGISTERED if previous != self.current else Transition.NONE

    def failed(self) -> Transition:
        self.failures += 1
        self.index = (self.index + 1) % len(self.controllers)
        if self.failures % len(self.controllers):
            self._next(0.0)  # others of the list are untried in this round: go on at once
        else:
            self._next(self.backoff(self.failures // len(self.controllers)))
        if self.unreachable:
            self.registered = None
        return Transition.UNREACHABLE if self.failures == len(self.controllers) else Transition.NONE

    def backoff(self, rounds: int) -> float:
        """The wait after `rounds` full rounds of failures: first_backoff doubling up to
        max_backoff, shortened by a random fraction of up to `jitter`."""
        base = min(self.max_backoff, self.first_backoff * 2 ** min(rounds - 1, 32))
        return base * (1.0 - self.jitter * self.rand())

    def _next(self, delay: float) -> None:
        self.next_at = self.clock() + (0.0 if self.urgent else delay)


def answered_by(exc: BaseException) -> str:
    """The id of the controller that answered with this error itself ("" when the call failed
    on the way: no connection, a timeout)."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return ""
    for key, value in exc.trailing_metadata() or ():
        if key == ANSWERED_METADATA:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""


def describe_error(exc: BaseException) -> str:
    """One line, no traceback: an unreachable controller is an expected condition. What a
    controller answered is given as it said it (its details may quote a connection error of
    its own, to etcd, which is not ours to shorten)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        details = " ".join((exc.details() or "").split())
        if answered_by(exc):
            return f"{exc.code().name}: {details}" if details else exc.code().name
        # "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:7000: Failed
        # to connect to remote host: Connection refused": the address is in the line already
        inner = _LAST_ERROR.search(details)
        details = inner.group(1) if inner else details
        return f"{exc.code().name}: {details}" if details else exc.code().name
    return " ".join(str(exc).split()) or type(exc).__name__


class Heartbeat:
    """The task that sends `describe()` to the controllers, on the agent's loop.

    One channel per controller, made on first use and dropped after a failure, so that each
    retry is a fresh connection attempt on our schedule rather than gRPC's own reconnect
    backoff (which would delay noticing that a controller is back by up to two minutes).
    """

    def __init__(self, fv: FleetvisorConfig, describe: Callable[[], pb.HeartbeatRequest], log: MainLog,
                 *, schedule: Schedule | None = None, call_timeout: float = CALL_TIMEOUT,
                 tls: TlsMaterial | None = None, keeper: Keeper | None = None) -> None:
        self.fv = fv
        self.describe = describe
        self.log = log
        self.keeper = keeper  # takes the security state a controller answers with
        self.call_timeout = call_timeout
        self.schedule = schedule or Schedule(tuple(format_address(h, p) for h, p in fv.controllers),
                                             index=home(fv.node, len(fv.controllers)))
        self._channels: dict[str, tuple[grpc.aio.Channel, pb_grpc.ControllerServiceStub]] = {}  # by target
        self.tls = tls  # the agent's own set (GrpcFace's): new channels follow its rotation
        self._generation = tls.generation if tls is not None else 0
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    def poke(self, revision: str = "") -> None:
        """Heartbeat now, e.g. because a revision was applied and the controller waits to see it."""
        self.schedule.hurry()
        self._poked.set()

    async def stop(self) -> None:
        """Immediate: an in-flight call is cancelled, not waited for."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for target in list(self._channels):
            await self._drop(target)

    async def _run(self) -> None:
        while True:
            delay = self.schedule.due()
            if delay > 0:
                self._poked.clear()
                await wait_within(self._poked.wait(), delay)
                continue  # a poke moved the next attempt forward: ask the schedule again
            await self._beat()

    async def _beat(self) -> None:
        schedule = self.schedule
        target = schedule.current
        schedule.started()
        attempt = schedule.attempts
        if self.tls is not None:
            self.tls.refresh()
            if self.tls.generation != self._generation:  # rotated: dial again with the new set
                self._generation = self.tls.generation
                for old in list(self._channels):
                    await self._drop(old)
        try:
            request = self.describe()
            response = await self._stub(target).Heartbeat(request, timeout=self.call_timeout)
        except (grpc.RpcError, OSError) as exc:
            await self._failed(target, attempt, describe_error(exc), answered=bool(answered_by(exc)))
            return
        except Exception as exc:  # a bug here must not end membership
            self.log.error(f"heartbeat to controller {target} failed unexpectedly: {exc!r}")
            await self._failed(target, attempt, describe_error(exc))
            return
        if schedule.succeeded(response.interval_seconds) is Transition.REGISTERED:
            self.log.info(f"registered with controller {target}")
        if self.keeper is not None and response.HasField("security"):
            self._secure(target, response.security)
        self.log.trace(f"heartbeat attempt {attempt} to controller {target} ok; "
                       f"next in {schedule.due():.2f}s")

    def _secure(self, target: str, message: pb.SecurityState) -> None:
        assert self.keeper is not None
        try:
            state = state_from_pb(message)
        except PolicyError as exc:
            self.log.warn(f"controller {target} sent policies this agent cannot use ({exc}); "
                          f"keeping revision {self.keeper.revision}")
            return
        self.keeper.accept(state)
        self.log.info(f"policies at revision {state.revision} from controller {target}: "
                      f"{len(state.policies)} policies, {len(state.revoked)} revoked certificates")

    async def _failed(self, target: str, attempt: int, reason: str, *, answered: bool = False) -> None:
        schedule = self.schedule
        await self._drop(target)
        transition = schedule.failed()
        self.log.debug(f"heartbeat attempt {attempt} to controller {target} failed: {reason}; "
                       f"next attempt in {schedule.due():.1f}s")
        if transition is Transition.UNREACHABLE:
            if answered:  # reached, and it said no: say what it said, not that it is unreachable
                self.log.warn(f"no controller took the heartbeat ({', '.join(schedule.controllers)}): "
                              f"controller {target} answered {reason}; retrying")
            else:
                self.log.warn(f"cannot reach any controller ({', '.join(schedule.controllers)}): "
                              f"{reason}; retrying")

    def _stub(self, target: str) -> pb_grpc.ControllerServiceStub:
        """The channel to `target` and its stub, made once: a stub binds every method of the
        service, which costs more than the heartbeat itself."""
        if target not in self._channels:
            if self.tls is not None:
                channel = grpc.aio.secure_channel(target, self.tls.channel_credentials())
            else:
                channel = grpc.aio.insecure_channel(target)
            self._channels[target] = (channel, pb_grpc.ControllerServiceStub(channel))
        return self._channels[target][1]

    async def _drop(self, target: str) -> None:
        entry = self._channels.pop(target, None)
        if entry is not None:
            await entry[0].close(grace=None)


def agent_describer(fv: FleetvisorConfig, face: GrpcFace) -> Callable[[], pb.HeartbeatRequest]:
    """What the agent says about itself, read fresh for each heartbeat from the core's
    `agent_info`, as its gRPC face answers GetInfo. `face` is the started GrpcFace."""
    assert fv.grpc_listen is not None
    host, port = fv.grpc_listen
    # As configured, with the port actually bound (grpc_listen may name port 0). An empty or
    # wildcard host is for the controller to fill in from the heartbeat's peer address.
    address = format_address(host, face.port or port)

    def describe() -> pb.HeartbeatRequest:
        info = operations.agent_info(face.core, LOCAL, face.servicer.fleet)
        applied = face.servicer.fleet.store.current()
        return pb.HeartbeatRequest(
            node=info.node, address=address, labels=dict(info.labels),
            agent_version=info.agent_version, applied_revision=info.applied_revision,
            agent_run_id=face.journal.run_id, started_at=info.started_at,
            edited_by_hand=info.edited_by_hand, security_revision=face.keeper.revision,
            cluster_id=applied.cluster_id if applied is not None else "",
            local_revision=applied is not None and applied.local,
            local_sections=face.core.config.local_sections)
    return describe
