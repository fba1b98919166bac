"""The `supervisor.*` XML-RPC namespace: supervisord 4.3's methods, names and structures.

Every method is a translation: check and convert the arguments, call `operations`, turn the
result into the structs supervisorctl expects. The docstrings are what system.methodHelp
returns; their `@param`/`@return` tags are what system.methodSignature reports, so the tag
types are kept exactly as supervisord declares them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from .. import operations as ops
from ..caller import Caller
from ..faults import Fault, FaultError
from .xmlrpc import xml_safe

if TYPE_CHECKING:
    from ..supervisor import Supervisor

def log_text(data: bytes) -> str:
    """Log bytes as an XML-RPC string: UTF-8, undecodable bytes and XML-illegal characters
    replaced (a log holding ANSI colours or NULs would break the whole response)."""
    return xml_safe(data.decode("utf-8", "replace"))


def _outcome(outcome: ops.Outcome) -> bool | list[dict[str, object]]:
    """A name of one process answers true (its failure is a fault); `group:*` answers the
    group's status structs."""
    return _results(outcome.results) if outcome.group else True


def _results(results: Iterable[ops.ProcessResult]) -> list[dict[str, object]]:
    return [r.as_dict() for r in results]


_ANONYMOUS = Caller("xmlrpc")  # an XML-RPC caller the face knows no name for


class SupervisorNamespace:
    """supervisor.* — public methods are RPC methods; `ALIASES` are older names."""

    ALIASES: ClassVar[dict[str, str]] = {
        "getVersion": "getAPIVersion",
        "readMainLog": "readLog",
        "readProcessLog": "readProcessStdoutLog",
        "tailProcessLog": "tailProcessStdoutLog",
        "clearProcessLog": "clearProcessLogs",
    }

    def __init__(self, core: Supervisor, caller: Caller = _ANONYMOUS) -> None:
        self.core = core
        self.caller = caller

    # -- the daemon ----------------------------------------------------------------------------

    def getAPIVersion(self) -> str:
        """The version of the XML-RPC API this daemon speaks.

        @return string version  the API version, '3.0'
        """
        ops.ensure_running(self.core)
        return ops.API_VERSION

    def getSupervisorVersion(self) -> str:
        """The supervisord version this daemon stands in for.

        @return string version  the version string
        """
        ops.ensure_running(self.core)
        return ops.SUPERVISOR_VERSION

    def getIdentification(self) -> str:
        """The identifier of this daemon ([supervisord] identifier).

        @return string identifier  the identifier
        """
        ops.ensure_running(self.core)
        return ops.agent_info(self.core, self.caller).identifier

    def getState(self) -> dict[str, object]:
        """The daemon's own state.

        @return struct result  statecode (int) and statename (string)
        """
        ops.ensure_running(self.core)
        state = ops.agent_info(self.core, self.caller).state
        return {"statecode": int(state), "statename": state.name}

    def getPID(self) -> int:
        """The daemon's process id.

        @return int pid  the pid
        """
        ops.ensure_running(self.core)
        return ops.agent_info(self.core, self.caller).pid

    def readLog(self, offset: int, length: int) -> str:
        """Bytes of the main log: `length` bytes from `offset`; a negative offset counts
        from the end (length must then be 0); length 0 reads to the end.

        @param int offset  where to start
        @param int length  how many bytes
        @return string result  the bytes read
        """
        return log_text(ops.read_main_log(self.core, self.caller, offset, length))

    def clearLog(self) -> bool:
        """Empty the main log (remove it and start a new file).

        @return boolean result  true unless an error occurred
        """
        return ops.clear_main_log(self.core, self.caller)

    def shutdown(self) -> bool:
        """Stop every process, then exit.

        @return boolean result  true unless an error occurred
        """
        return ops.shutdown(self.core, self.caller)

    async def restart(self) -> bool:
        """Stop every process, read the config file again and start over.

        @return boolean result  true unless an error occurred
        """
        return await ops.restart_daemon(self.core, self.caller)

    # -- configuration -------------------------------------------------------------------------

    async def reloadConfig(self) -> list[list[list[str]]]:
        """Read the config file again without changing what runs; report how its process
        groups differ from the running ones.

        @return array result  [[added, changed, removed]], each an array of group names
        """
        added, changed, removed = await ops.reread(self.core, self.caller)
        return [[added, changed, removed]]

    async def addProcessGroup(self, name: str) -> bool:
        """Make a process group of the last read config file live.

        @param string name  the group's name
        @return boolean result  true if it was added
        """
        return await ops.add_group(self.core, self.caller, name)

    def removeProcessGroup(self, name: str) -> bool:
        """Forget a process group whose processes are all stopped.

        @param string name  the group's name
        @return boolean result  true if it was removed
        """
        return ops.remove_group(self.core, self.caller, name)

    def getAllConfigInfo(self) -> list[dict[str, object]]:
        """The configuration of every process of the last read config file, in use or not.

        @return array result  an array of structs, one per process
        """
        return ops.all_config_info(self.core, self.caller)

    # -- processes -----------------------------------------------------------------------------

    async def startProcess(self, name: str, wait: bool = True) -> object:
        """Start a process (`name`, `group:name`, or every process of `group:*`).

        @param string name  the process to start
        @param boolean wait  answer only once it is RUNNING (or failed)
        @return boolean result  true unless an error occurred
        """
        return _outcome(await ops.start(self.core, self.caller, name, wait))

    async def startProcessGroup(self, name: str, wait: bool = True) -> list[dict[str, object]]:
        """Start every process of a group that is not running.

        @param string name  the group's name
        @param boolean wait  answer only once each is RUNNING (or failed)
        @return array result  a status struct per process
        """
        return _results(await ops.start_group(self.core, self.caller, name, wait))

    async def startAllProcesses(self, wait: bool = True) -> list[dict[str, object]]:
        """Start every process that is not running.

        @param boolean wait  answer only once each is RUNNING (or failed)
        @return array result  a status struct per process
        """
        return _results(await ops.start_all(self.core, self.caller, wait))

    async def stopProcess(self, name: str, wait: bool = True) -> object:
        """Stop a process (`name`, `group:name`, or every process of `group:*`).

        @param string name  the process to stop
        @param boolean wait  answer only once it has stopped
        @return boolean result  true unless an error occurred
        """
        return _outcome(await ops.stop(self.core, self.caller, name, wait))

    async def stopProcessGroup(self, name: str, wait: bool = True) -> list[dict[str, object]]:
        """Stop every running process of a group.

        @param string name  the group's name
        @param boolean wait  answer only once each has stopped
        @return array result  a status struct per process
        """
        return _results(await ops.stop_group(self.core, self.caller, name, wait))

    async def stopAllProcesses(self, wait: bool = True) -> list[dict[str, object]]:
        """Stop every running process.

        @param boolean wait  answer only once each has stopped
        @return array result  a status struct per process
        """
        return _results(await ops.stop_all(self.core, self.caller, wait))

    async def signalProcess(self, name: str, signal: object) -> object:
        """Send a signal to a process (`name`, `group:name`, or `group:*`).

        @param string name  the process to signal
        @param string signal  a signal name ('HUP', 'SIGHUP') or number ('1')
        @return boolean result  true unless an error occurred
        """
        return _outcome(await ops.signal(self.core, self.caller, name, signal))

    async def signalProcessGroup(self, name: str, signal: object) -> list[dict[str, object]]:
        """Send a signal to every process of a group that can take one.

        @param string name  the group's name
        @param string signal  a signal name or number
        @return array result  a status struct per process
        """
        return _results(await ops.signal_group(self.core, self.caller, name, signal))

    async def signalAllProcesses(self, signal: object) -> list[dict[str, object]]:
        """Send a signal to every process that can take one.

        @param string signal  a signal name or number
        @return array result  a status struct per process
        """
        return _results(await ops.signal_all(self.core, self.caller, signal))

    def getProcessInfo(self, name: str) -> dict[str, object]:
        """State and facts of one process.

        @param string name  the process (`name` or `group:name`)
        @return struct result  the process's info struct
        """
        return ops.get_process_info(self.core, self.caller, name).as_dict()

    def getAllProcessInfo(self) -> list[dict[str, object]]:
        """State and facts of every process, by group and process name.

        @return array result  an array of info structs
        """
        return [info.as_dict() for info in ops.all_process_info(self.core, self.caller)]

    # -- process logs and input ----------------------------------------------------------------

    def readProcessStdoutLog(self, name: str, offset: int, length: int) -> str:
        """Bytes of a process's stdout log, with readLog's offset and length rules.

        @param string name  the process
        @param int offset  where to start
        @param int length  how many bytes
        @return string result  the bytes read
        """
        return log_text(ops.read_process_log(self.core, self.caller, name, "stdout", offset, length))

    def readProcessStderrLog(self, name: str, offset: int, length: int) -> str:
        """Bytes of a process's stderr log, with readLog's offset and length rules.

        @param string name  the process
        @param int offset  where to start
        @param int length  how many bytes
        @return string result  the bytes read
        """
        return log_text(ops.read_process_log(self.core, self.caller, name, "stderr", offset, length))

    def tailProcessStdoutLog(self, name: str, offset: int, length: int) -> list[object]:
        """Up to `length` bytes of a process's stdout log from `offset`; when the log has
        grown past offset + length, the window moves to its end and overflow is set. The
        returned offset is where the next call should start.

        @param string name  the process
        @param int offset  where to start
        @param int length  at most this many bytes
        @return array result  [string bytes, int offset, bool overflow]
        """
        data, offset, overflow = ops.tail_process_log(self.core, self.caller, name, "stdout", offset, length)
        return [log_text(data), offset, overflow]

    def tailProcessStderrLog(self, name: str, offset: int, length: int) -> list[object]:
        """As tailProcessStdoutLog, for the stderr log.

        @param string name  the process
        @param int offset  where to start
        @param int length  at most this many bytes
        @return array result  [string bytes, int offset, bool overflow]
        """
        data, offset, overflow = ops.tail_process_log(self.core, self.caller, name, "stderr", offset, length)
        return [log_text(data), offset, overflow]

    def clearProcessLogs(self, name: str) -> bool:
        """Empty a process's stdout and stderr logs.

        @param string name  the process
        @return boolean result  true unless an error occurred
        """
        return ops.clear_process_logs(self.core, self.caller, name)

    async def clearAllProcessLogs(self) -> list[dict[str, object]]:
        """Empty the logs of every process.

        @return array result  a status struct per process
        """
        return _results(await ops.clear_all_process_logs(self.core, self.caller))

    def sendProcessStdin(self, name: str, chars: object) -> bool:
        """Write characters to a running process's stdin (text is sent as UTF-8).

        @param string name  the process
        @param string chars  what to write
        @return boolean result  true unless an error occurred
        """
        if isinstance(chars, str):
            data = chars.encode("utf-8")
        elif isinstance(chars, bytes):
            data = chars
        else:
            raise FaultError(Fault.INCORRECT_PARAMETERS, chars)
        return ops.send_stdin(self.core, self.caller, name, data)

    def sendRemoteCommEvent(self, type: object, data: object) -> bool:
        """Publish a REMOTE_COMMUNICATION event to the event listeners that want it.

        @param string type  the event's type header
        @param string data  the event's body
        @return boolean result  true unless an error occurred
        """
        return ops.send_remote_comm(self.core, self.caller, _text(type), _text(data))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)
