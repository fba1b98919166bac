"""`supervisor.*` over the whole fleet: the controller's XML-RPC endpoint as one supervisord.

A thin adapter like the gRPC servicer: reads come from the live fleet view (views, livestate),
writes go through the same core as ControllerService.Control (fanout.control, with the same
scope check, the same leader and etcd rule from writegate, and an audit entry), logs through
tailing.tail as gRPC's TailLog. Names are xmlrpc_shapes' ``NODE/GROUP:NAME``.

Faults follow supervisord's codes, so the stock supervisorctl prints its usual words: an
unknown name is BAD_NAME; a process the caller may not read is BAD_NAME too (as fleet status,
it is not shown); a refused or impossible write is FAILED with the reason in one line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import ClassVar, NoReturn

import aetcd

from fleetvisor.agent.faults import Fault, FaultError
from fleetvisor.agent.operations.results import API_VERSION, SUPERVISOR_VERSION
from fleetvisor.agent.rpc.supervisor_api import log_text
from fleetvisor.agent.security.identity import Identity
from fleetvisor.v1 import agent_pb2 as apb

from . import audit, fanout, tailing
from . import xmlrpc_shapes as shapes
from .audit import Refusals
from .authorize import Checks
from .errors import ControllerError, InvalidArgument, NotFound, PermissionDenied
from .fleet import Fleet
from .leadership import Leadership
from .namespec import GLOB_CHARS
from .processes import ProcessView
from .records import MemberRecord
from .writegate import write_refusal
from .xmlrpc_shapes import FleetName, LiveProcess

ERRORS = (ControllerError, aetcd.exceptions.ClientError)
RUNNING = {"statecode": 1, "statename": "RUNNING"}  # supervisord's own state: this endpoint serves


def _no_fleet_meaning(method: str, instead: str) -> NoReturn:
    raise FaultError(Fault.FAILED, f"supervisor.{method} has no fleet meaning: {instead}")


class FleetSupervisor:
    """supervisor.* for one caller (`who`, named `audit_name` in the audit log)."""

    ALIASES: ClassVar[dict[str, str]] = {
        "getVersion": "getAPIVersion",
        "readProcessLog": "readProcessStdoutLog",
        "tailProcessLog": "tailProcessStdoutLog",
    }

    def __init__(self, fleet: Fleet, leadership: Leadership, checks: Checks, refusals: Refusals | None,
                 who: Identity, audit_name: str, *, command_timeout: float) -> None:
        self._fleet = fleet
        self._leadership = leadership
        self._checks = checks
        self._refusals = refusals
        self._who = who
        self._audit_name = audit_name
        self._timeout = command_timeout

    # -- the endpoint itself -------------------------------------------------------------------

    def getAPIVersion(self) -> str:
        """The version of the XML-RPC API this endpoint speaks.

        @return string version  the API version, '3.0'
        """
        return API_VERSION

    def getSupervisorVersion(self) -> str:
        """The supervisord version this endpoint stands in for.

        @return string version  the version string
        """
        return SUPERVISOR_VERSION

    def getIdentification(self) -> str:
        """This controller's id: the fleet answers as one supervisord through it.

        @return string identifier  the identifier
        """
        return f"fleetvisor controller {self._fleet.id}"

    def getState(self) -> dict[str, object]:
        """The endpoint's state: RUNNING while it answers (nodes' own states are per process).

        @return struct result  statecode (int) and statename (string)
        """
        return dict(RUNNING)

    def getPID(self) -> int:
        """The controller's process id.

        @return int pid  the pid
        """
        return os.getpid()

    # -- reads ---------------------------------------------------------------------------------

    def getAllProcessInfo(self) -> list[dict[str, object]]:
        """Every process of every node the caller may read, by node, group and name; a node this
        controller cannot follow shows its processes as UNKNOWN, saying why (one NODE/*:* entry
        when none of its processes is known here yet).

        @return array result  an array of info structs
        """
        now = time.time()
        infos: list[dict[str, object]] = []
        for member, procs, why in self._visible():
            link = self._fleet.links.get(member.name)
            if why and (link is None or not link.has_data):  # nothing known of it: the node itself
                infos.append(shapes.unknown_node_info(member.name, why, now))
            for proc in procs:
                infos.append(shapes.process_info(member.name, proc) if not why
                             else shapes.down_info(member.name, proc, why, now))
        return infos

    def getProcessInfo(self, name: str) -> dict[str, object]:
        """State and facts of one process.

        @param string name  the process, NODE/GROUP:NAME
        @return struct result  the process's info struct
        """
        fname = shapes.parse(name)
        for member, procs, why in self._visible(fname.node):
            for proc in procs:
                if proc.group == fname.group and proc.name == fname.name:
                    return (shapes.process_info(member.name, proc) if not why
                            else shapes.down_info(member.name, proc, why, time.time()))
        raise FaultError(Fault.BAD_NAME, name)

    def getAllConfigInfo(self) -> list[dict[str, object]]:
        """A config struct per process of the fleet, in use on its node. Program options the
        controller does not follow are supervisord's defaults; fleetctl shows the real ones.

        @return array result  an array of structs, one per process
        """
        return [shapes.config_info(member.name, proc) for member, procs, _ in self._visible() for proc in procs]

    def _visible(self, node: str | None = None) -> list[tuple[MemberRecord, list[LiveProcess], str]]:
        """(member, its processes the caller may read, why its state is not live or "")."""
        members = self._fleet.membership.members()
        if node is not None:
            members = {node: members[node]} if node in members else {}
        everything = self._checks.sees_all(self._who)
        found = []
        for name in sorted(members):
            member = members[name]
            if not everything and not self._checks.sees_node(self._who, name, member.labels):
                continue
            link = self._fleet.links.get(name)
            procs: list[LiveProcess] = list(link.snapshot()) if link is not None else []
            if not everything:
                procs = self._checks.visible(self._who, name, member.labels, procs, lambda p: (p.group, p.name))
            why = ""
            if link is None or not link.reachable:
                membership = self._fleet.membership
                why = shapes.down_reason(name, membership.is_up(name), link.error if link else "",
                                         membership.last_alive(name))
            found.append((member, sorted(procs, key=lambda p: (p.group, p.name)), why))
        return found

    # -- writes --------------------------------------------------------------------------------

    async def startProcess(self, name: str, wait: bool = True) -> object:
        """Start a process (NODE/GROUP:NAME), or every process of NODE/GROUP:*.

        @param string name  the process to start
        @param boolean wait  answer only once it is RUNNING (or failed)
        @return boolean result  true unless an error occurred
        """
        return await self._one("startProcess", "start", name, wait=wait)

    async def startProcessGroup(self, name: str, wait: bool = True) -> list[dict[str, object]]:
        """Start every process of a group (NODE/GROUP).

        @param string name  the group's name
        @param boolean wait  answer only once each is RUNNING (or failed)
        @return array result  a status struct per process
        """
        return await self._many("startProcessGroup", "start", [shapes.parse(name, group_only=True)], wait=wait)

    async def startAllProcesses(self, wait: bool = True) -> list[dict[str, object]]:
        """Start every process of every node.

        @param boolean wait  answer only once each is RUNNING (or failed)
        @return array result  a status struct per process
        """
        return await self._many("startAllProcesses", "start", [], wait=wait)

    async def stopProcess(self, name: str, wait: bool = True) -> object:
        """Stop a process (NODE/GROUP:NAME), or every process of NODE/GROUP:*.

        @param string name  the process to stop
        @param boolean wait  answer only once it has stopped
        @return boolean result  true unless an error occurred
        """
        return await self._one("stopProcess", "stop", name, wait=wait)

    async def stopProcessGroup(self, name: str, wait: bool = True) -> list[dict[str, object]]:
        """Stop every process of a group (NODE/GROUP).

        @param string name  the group's name
        @param boolean wait  answer only once each has stopped
        @return array result  a status struct per process
        """
        return await self._many("stopProcessGroup", "stop", [shapes.parse(name, group_only=True)], wait=wait)

    async def stopAllProcesses(self, wait: bool = True) -> list[dict[str, object]]:
        """Stop every process of every node.

        @param boolean wait  answer only once each has stopped
        @return array result  a status struct per process
        """
        return await self._many("stopAllProcesses", "stop", [], wait=wait)

    async def signalProcess(self, name: str, signal: object) -> object:
        """Send a signal to a process (NODE/GROUP:NAME or NODE/GROUP:*).

        @param string name  the process to signal
        @param string signal  a signal name ('HUP', 'SIGHUP') or number ('1')
        @return boolean result  true unless an error occurred
        """
        return await self._one("signalProcess", "signal", name, signal=_signal(signal))

    async def signalProcessGroup(self, name: str, signal: object) -> list[dict[str, object]]:
        """Send a signal to every process of a group (NODE/GROUP).

        @param string name  the group's name
        @param string signal  a signal name or number
        @return array result  a status struct per process
        """
        return await self._many("signalProcessGroup", "signal", [shapes.parse(name, group_only=True)],
                                signal=_signal(signal))

    async def signalAllProcesses(self, signal: object) -> list[dict[str, object]]:
        """Send a signal to every process of every node.

        @param string signal  a signal name or number
        @return array result  a status struct per process
        """
        return await self._many("signalAllProcesses", "signal", [], signal=_signal(signal))

    async def _one(self, method: str, action: str, name: str, *, wait: bool = True, signal: str = "") -> object:
        """A name of one process answers true or its fault; NODE/GROUP:* answers the group's structs."""
        fname = shapes.parse(name)
        if fname.name is None:
            return await self._many(method, action, [fname], wait=wait, signal=signal)
        _, results = await self._control(method, action, [fname], wait=wait, signal=signal)
        for result in results:
            if not result.results and result.error:
                raise FaultError(Fault.FAILED, f"{name}: node {result.node}: {result.error}")
            for outcome in result.results:
                if outcome.ok:
                    return True
                raise FaultError(Fault(shapes.fault_code(outcome)), name)
        raise FaultError(Fault.BAD_NAME, name)

    async def _many(self, method: str, action: str, names: list[FleetName], *, wait: bool = True,
                    signal: str = "") -> list[dict[str, object]]:
        targets, results = await self._control(method, action, names, wait=wait, signal=signal)
        answer: list[dict[str, object]] = []
        for result in results:
            if result.results or not result.error:
                answer += [shapes.result_dict(result.node, r) for r in result.results]
            else:  # the node could not be driven: each process it would have reached says why
                why = f"node {result.node}: {result.error}"
                answer += [shapes.failed_dict(result.node, p, why) for p in targets.get(result.node, [])]
        return answer

    async def _control(self, method: str, action: str, names: list[FleetName], *, wait: bool,
                       signal: str) -> tuple[dict[str, Sequence[ProcessView]], list[fanout.NodeResult]]:
        """fanout.control for exact names (globs would widen a stock client's exact name), with
        gRPC Control's rules: leader only, scope-checked before any call, audited."""
        if refusal := write_refusal(self._fleet, self._leadership):
            raise FaultError(Fault.FAILED, self._redirect(str(refusal)))
        members = self._fleet.membership.members()
        for fname in names:
            if fname.node not in members or GLOB_CHARS & set(fname.group + (fname.name or "")):
                raise FaultError(Fault.BAD_NAME, f"{fname.node}{shapes.NODE_SEP}{fname.spec}")
        patterns = [n.pattern for n in names] or ["all"]
        args: dict[str, object] = {"patterns": patterns, "signal": signal, "via": f"xmlrpc {method}"}
        targets: dict[str, Sequence[ProcessView]] = {}

        def check(picked: list[tuple[MemberRecord, Sequence[ProcessView]]]) -> None:
            self._checks.control(self._who, picked)
            targets.update((m.name, procs) for m, procs in picked)
        command = fanout.Command(action=action, patterns=patterns, signal=signal, wait=wait)
        try:
            results = await fanout.control(self._fleet, command, default_timeout=self._timeout, check=check)
        except PermissionDenied as exc:
            if self._refusals is not None:
                await self._refusals(self._who, f"xmlrpc/supervisor.{method}", str(exc))
            raise FaultError(Fault.FAILED, str(exc)) from None
        except ERRORS as exc:
            await self._audit(f"control.{action}", args, False, str(exc))
            if isinstance(exc, (NotFound, InvalidArgument)):
                raise FaultError(Fault.BAD_NAME, " ".join(f"{n.node}/{n.spec}" for n in names)) from None
            raise FaultError(Fault.FAILED, str(exc)) from None
        await self._audit(f"control.{action}", args, all(r.ok for r in results), fanout.summary(results))
        return targets, results

    def _redirect(self, reason: str) -> str:
        address = self._leadership.leader_address
        return f"{reason}; writes go to the leader's XML-RPC endpoint (its gRPC is {address})" if address else reason

    async def _audit(self, action: str, args: dict[str, object], ok: bool, result: str) -> None:
        store = self._fleet.store
        await audit.record(store.client, store.prefix,
                           audit.entry(self._audit_name, action, args, ok, result, self._fleet.id))

    # -- logs ----------------------------------------------------------------------------------

    async def readProcessStdoutLog(self, name: str, offset: int, length: int) -> str:
        """Bytes of a process's stdout log: `length` bytes from `offset`; a negative offset
        counts from the end (length must then be 0); length 0 reads to the end.

        @param string name  the process
        @param int offset  where to start
        @param int length  how many bytes
        @return string result  the bytes read
        """
        return log_text(await self._read(name, apb.STDOUT, offset, length))

    async def readProcessStderrLog(self, name: str, offset: int, length: int) -> str:
        """Bytes of a process's stderr log, with readProcessStdoutLog's offset and length rules.

        @param string name  the process
        @param int offset  where to start
        @param int length  how many bytes
        @return string result  the bytes read
        """
        return log_text(await self._read(name, apb.STDERR, offset, length))

    async def tailProcessStdoutLog(self, name: str, offset: int, length: int) -> list[object]:
        """Up to `length` bytes of a process's stdout log from `offset`; when the log has grown
        past offset + length, the window moves to its end and overflow is set. The returned
        offset is where the next call should start.

        @param string name  the process
        @param int offset  where to start
        @param int length  at most this many bytes
        @return array result  [string bytes, int offset, bool overflow]
        """
        return await self._tail(name, apb.STDOUT, offset, length)

    async def tailProcessStderrLog(self, name: str, offset: int, length: int) -> list[object]:
        """As tailProcessStdoutLog, for the stderr log.

        @param string name  the process
        @param int offset  where to start
        @param int length  at most this many bytes
        @return array result  [string bytes, int offset, bool overflow]
        """
        return await self._tail(name, apb.STDERR, offset, length)

    async def _read(self, name: str, stream: apb.LogStream, offset: int, length: int) -> bytes:
        if length < 0 or (offset < 0 and length != 0):
            raise FaultError(Fault.BAD_ARGUMENTS)
        request = (apb.TailLogRequest(stream=stream, last_bytes=-offset) if offset < 0
                   else apb.TailLogRequest(stream=stream, offset=offset))
        data, _ = await self._chunks(name, request)
        return data[:length] if length else data

    async def _tail(self, name: str, stream: apb.LogStream, offset: int, length: int) -> list[object]:
        """supervisord's tailFile on the node's file, from the last `length` bytes and its size."""
        if length < 0:
            raise FaultError(Fault.BAD_ARGUMENTS)
        data, size = await self._chunks(name, apb.TailLogRequest(stream=stream, last_bytes=max(length, 1)))
        overflow = size > offset + length
        data = data[-length:] if length and (overflow or offset < size) else b""
        return [log_text(data), size, overflow]

    async def _chunks(self, name: str, request: apb.TailLogRequest) -> tuple[bytes, int]:
        """The data of a read that does not follow, and the file's size (its end offset)."""
        fname = shapes.parse(name)
        if fname.name is None:
            raise FaultError(Fault.BAD_NAME, name)
        request.name = fname.spec
        data, size = b"", 0
        try:
            async for chunk in tailing.tail(self._fleet, self._checks, self._who, fname.node, request,
                                            timeout=self._timeout):
                data += chunk.data
                size = chunk.offset
        except PermissionDenied:
            raise FaultError(Fault.BAD_NAME, name) from None  # not shown in status either
        except NotFound:
            raise FaultError(Fault.BAD_NAME, name) from None
        except InvalidArgument as exc:
            raise FaultError(Fault.BAD_ARGUMENTS, str(exc)) from None
        except ERRORS as exc:
            raise FaultError(Fault.FAILED, str(exc)) from None
        return data, size

    # -- what a fleet has no use for -----------------------------------------------------------

    def shutdown(self) -> bool:
        """Refused: the fleet is not one daemon to stop.

        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("shutdown", "stop processes with stopAllProcesses, or each agent on its host")

    def restart(self) -> bool:
        """Refused: the fleet is not one daemon to restart.

        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("restart", "restart processes with supervisorctl restart, or fleetctl rolling-restart")

    def reloadConfig(self) -> list[object]:
        """Refused: the fleet's configs are revisions pushed with fleetctl.

        @return array result  never: a FAILED fault
        """
        _no_fleet_meaning("reloadConfig", "push config revisions with fleetctl config push")

    def addProcessGroup(self, name: str) -> bool:
        """Refused: groups reach nodes as config revisions.

        @param string name  the group
        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("addProcessGroup", "push config revisions with fleetctl config push")

    def removeProcessGroup(self, name: str) -> bool:
        """Refused: groups leave nodes with config revisions.

        @param string name  the group
        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("removeProcessGroup", "push config revisions with fleetctl config push")

    def readLog(self, offset: int, length: int) -> str:
        """Refused: the controller logs to its stderr (the journal under systemd).

        @param int offset  where to start
        @param int length  how many bytes
        @return string result  never: a FAILED fault
        """
        _no_fleet_meaning("readLog", "the controller logs to its stderr (journalctl -u fleetvisor-controller)")

    def clearLog(self) -> bool:
        """Refused: the controller has no main log file.

        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("clearLog", "the controller logs to its stderr")

    def clearProcessLogs(self, name: str) -> bool:
        """Refused: logs are cleared on the node (its own supervisorctl clear).

        @param string name  the process
        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("clearProcessLogs", "clear logs on the node with its own supervisorctl")

    def clearAllProcessLogs(self) -> list[object]:
        """Refused: logs are cleared on each node.

        @return array result  never: a FAILED fault
        """
        _no_fleet_meaning("clearAllProcessLogs", "clear logs on each node with its own supervisorctl")

    def sendProcessStdin(self, name: str, chars: object) -> bool:
        """Refused: a process's stdin is written on its node.

        @param string name  the process
        @param string chars  what to write
        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("sendProcessStdin", "write to a process's stdin through its node's own endpoint")

    def sendRemoteCommEvent(self, type: object, data: object) -> bool:
        """Refused: events are published on each node.

        @param string type  the event's type header
        @param string data  the event's body
        @return boolean result  never: a FAILED fault
        """
        _no_fleet_meaning("sendRemoteCommEvent", "send events through each node's own endpoint")


def _signal(value: object) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if not text.strip():
        raise FaultError(Fault.BAD_SIGNAL, text)
    return text.strip()

