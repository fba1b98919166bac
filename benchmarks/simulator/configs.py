"""A virtual node's config: its own file (the local programs) and the fleet revisions pushed to
it, both read by the agent's parser exactly as an agent reads them (the node file as the main
file, the revision as the extra file that may only hold program-level sections and may not
redefine a local one).

Every node of a simulator process has the same own file, and a push sends the same text to
many nodes, so a parse is made once per distinct text and shared (`ConfigCache`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.model import Config, GroupConfig
from fleetvisor.agent.config.parser import load

# About 20 processes, as a typical application host runs them: an HTTP front, app servers,
# workers, infrastructure agents, and a few programs that are started only by hand.
DEFAULT_PROGRAMS = """
[program:nginx]
command=/usr/sbin/nginx -g "daemon off;"
priority=100

[program:app]
command=/srv/app/bin/serve --port 80%(process_num)02d
process_name=%(program_name)s_%(process_num)02d
numprocs=4
priority=200

[program:worker]
command=/srv/app/bin/worker --queue default
process_name=%(program_name)s_%(process_num)02d
numprocs=5
priority=300

[program:scheduler]
command=/srv/app/bin/scheduler
priority=300

[program:redis]
command=/usr/bin/redis-server /etc/redis/redis.conf
priority=50

[program:pgbouncer]
command=/usr/sbin/pgbouncer /etc/pgbouncer/pgbouncer.ini
priority=50

[program:node_exporter]
command=/usr/bin/prometheus-node-exporter
priority=10

[program:log_shipper]
command=/usr/bin/vector --config /etc/vector/vector.toml
priority=10

[program:consul]
command=/usr/bin/consul agent -config-dir /etc/consul.d
priority=10

[program:cache_warmer]
command=/srv/app/bin/warm-cache
priority=400

[program:mail_relay]
command=/usr/sbin/postfix start-fg
priority=400

[program:backup]
command=/usr/local/bin/backup --nightly
autostart=false

[program:reindex]
command=/srv/app/bin/reindex
autostart=false
autorestart=false
"""

NODE_FILE = """[supervisord]
logfile=/dev/null
childlogdir={logdir}
identifier=fleetvisor-sim

{programs}
"""


@dataclass(frozen=True)
class NodeConfig:
    """What every virtual node of a process runs before any push: its own groups and the
    program-level sections its file defines (which heartbeats report)."""

    groups: tuple[GroupConfig, ...]
    local_sections: tuple[str, ...]


class ConfigCache:
    """Parses with the agent's parser in a private directory; one parse per distinct text.
    A refused text is remembered as its ConfigError."""

    def __init__(self, programs: str = DEFAULT_PROGRAMS) -> None:
        self.dir = tempfile.mkdtemp(prefix="fleetvisor-sim-")
        self.main = os.path.join(self.dir, "node.conf")
        with open(self.main, "w") as f:
            f.write(NODE_FILE.format(logdir=self.dir, programs=programs))
        config = load(self.main)
        self.node = NodeConfig(config.groups, config.local_sections)
        self._parsed: dict[str, Config | ConfigError] = {}
        self._lock = threading.Lock()  # parses run in worker threads; one at a time, each once

    def with_revision(self, revision: str, text: str) -> tuple[GroupConfig, ...]:
        """Every group the node runs with this fleet text: its own and the revision's. Raises
        ConfigError naming the revision, as the agent's does. Blocking: call it off the loop."""
        key = hashlib.sha256(text.encode()).hexdigest()
        staged = os.path.join(self.dir, f"fleet-{key[:16]}.conf")
        with self._lock:
            parsed = self._parsed.get(key)
            if parsed is None:
                with open(staged, "w") as f:
                    f.write(text)
                try:
                    parsed = load(self.main, extra_files=[staged])
                except ConfigError as exc:
                    parsed = exc
                finally:
                    os.unlink(staged)
                self._parsed[key] = parsed
        if isinstance(parsed, ConfigError):  # named after the revision, as the agent names it
            named = f"revision {revision}"
            raise ConfigError(parsed.message.replace(staged, named), section=parsed.section, option=parsed.option,
                              line=parsed.line, file=named if parsed.file == staged else parsed.file)
        return parsed.groups

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)  # with the nodes' state dirs
