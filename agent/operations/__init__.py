"""What a client may ask of the core, decided once for every face.

XML-RPC, gRPC, the web page, /logtail and the heartbeat are thin translations of these
functions: none of them looks processes up, fans out over processes or restarts on its own.
Every call takes the `Caller` that asks (where authorization will attach), raises
`FaultError` with supervisord's codes and texts, and returns typed values that each face
converts to its wire shape. Waits ("start and hold the answer until the process is RUNNING")
are woken by the core's change notifications, never by polling: one subscription per call,
however many processes it acts on.

Two families of process calls:

- supervisord's (`start`, `stop_group`, `signal_all`, ...): a name that may be a group, the
  group/all forms acting only on processes they apply to, results in supervisord's order;
- the multi-target calls (`resolve`, then `start_processes`, `stop_processes`,
  `restart_processes`, `signal_processes`): explicit targets, one result per target in
  target order, every target reported (a stop of a stopped process is a NOT_RUNNING result).

The supervisord 4.3 ordering facts (supervisorctl prints results in the order it gets them)
live with the code that keeps them: `names` (priority order), `settle` (order of results),
`info` (getAllProcessInfo's order).
"""

from .configs import (
    SLICE,
    add_group,
    add_group_config,
    reexec_daemon,
    remove_group,
    reread,
    restart_daemon,
    shutdown,
)
from .control import (
                      restart_processes,
                      signal,
                      signal_all,
                      signal_group,
                      signal_number,
                      signal_processes,
                      start,
                      start_all,
                      start_group,
                      start_processes,
                      stop,
                      stop_all,
                      stop_group,
                      stop_processes,
)
from .info import agent_info, all_config_info, all_process_info, describe, get_process_info, process_info
from .logs import (
                      LOG_CHANNELS,
                      clear_all_process_logs,
                      clear_main_log,
                      clear_process_logs,
                      log_path,
                      main_log_path,
                      read_main_log,
                      read_process_log,
                      tail_process_log,
)
from .names import ensure_running, find_process, make_namespec, resolve, split_namespec
from .results import AGENT_VERSION, API_VERSION, SUPERVISOR_VERSION, AgentInfo, Outcome, ProcessInfo, ProcessResult
from .settle import RESULT_GRID, STOP_REPORT_INTERVAL
from .stdin import send_remote_comm, send_stdin

__all__ = [
    "AGENT_VERSION", "AgentInfo", "API_VERSION", "Outcome", "ProcessInfo", "ProcessResult",
    "SUPERVISOR_VERSION",
    "ensure_running", "find_process", "make_namespec", "resolve", "split_namespec",
    "RESULT_GRID", "STOP_REPORT_INTERVAL",
    "restart_processes", "signal", "signal_all", "signal_group", "signal_number",
    "signal_processes", "start", "start_all", "start_group", "start_processes", "stop", "stop_all",
    "stop_group", "stop_processes",
    "agent_info", "all_config_info", "all_process_info", "describe", "get_process_info",
    "process_info",
    "SLICE", "add_group", "add_group_config", "remove_group", "reexec_daemon", "reread", "restart_daemon", "shutdown",
    "clear_all_process_logs", "clear_main_log", "clear_process_logs", "LOG_CHANNELS", "log_path",
    "main_log_path", "read_main_log", "read_process_log", "tail_process_log",
    "send_remote_comm", "send_stdin",
]
