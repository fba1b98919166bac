"""Fleet config revisions on one node: kept on disk, validated whole, applied as reread + update.

The node's own file keeps the daemon-level sections (and may keep local programs). The fleet
owns the program-level sections it pushes; the applied revision lives in the state dir as
`fleet.conf` (+ `fleet.json` with its id) and every load of the config includes it, so an
agent restarted without its controller comes back with it.

`fleet.json` also keeps the cluster identity of the controller that last applied a revision
here (the heartbeat reports it, so that a controller of another cluster, or on an empty store,
knows the node is not its own) and whether the applied revision was applied per node
(`fleetctl --node ... config apply --force`), which the controller shows as drift. A per-node
apply keeps the cluster identity: the node still belongs to that cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import operations
from .caller import Caller
from .config.errors import ConfigError
from .config.model import Config, GroupConfig
from .config.parser import program_sections
from .supervisor import Supervisor, diff_groups

FLEET_FILE = "fleet.conf"
META_FILE = "fleet.json"


def default_state_dir(identifier: str) -> str:
    if os.getuid() == 0:
        return os.path.join("/var/lib/fleetvisor", identifier)
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "fleetvisor", identifier)


def state_dir_of(config: Config) -> str:
    fv = config.fleetvisor
    if fv is not None and fv.state_dir:
        return fv.state_dir
    return default_state_dir(config.supervisord.identifier)


@dataclass(frozen=True)
class Applied:
    revision: str
    text: str
    applied_at: float
    cluster_id: str = ""  # the cluster identity of the controller that last applied a revision here
    local: bool = False  # this revision was applied per node, not by a controller

    def sections(self) -> list[str]:
        """The names of the program-level sections the revision defines (its groups and programs)."""
        return sorted({section.split(":", 1)[1] for section in program_sections(self.text)})


class RevisionStore:
    """The applied revision in a state dir. Writes are atomic (temp file + rename)."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.fleet_path = os.path.join(state_dir, FLEET_FILE)
        self.meta_path = os.path.join(state_dir, META_FILE)
        self.remove_leftovers()

    def remove_leftovers(self) -> None:
        """Staged revisions and meta files an agent killed mid-apply left behind: at start no
        apply is under way, so any there is garbage."""
        try:
            names = os.listdir(self.state_dir)
        except OSError:
            return
        for name in names:
            if (name.startswith(".staged-") and name.endswith(".conf")) or name.startswith(".meta-"):
                try:
                    os.unlink(os.path.join(self.state_dir, name))
                except OSError:
                    pass

    def current(self) -> Applied | None:
        try:
            with open(self.meta_path) as f:
                meta = json.load(f)
            with open(self.fleet_path) as f:
                text = f.read()
        except (OSError, ValueError):
            return None
        return Applied(str(meta.get("revision", "")), text, float(meta.get("applied_at", 0)),
                       str(meta.get("cluster_id", "")), bool(meta.get("local", False)))

    def fleet_file(self) -> str | None:
        return self.fleet_path if os.path.exists(self.fleet_path) else None

    def stage(self, text: str) -> str:
        """Write a candidate revision next to the applied one; returns its path."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".staged-", suffix=".conf", dir=self.state_dir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def commit(self, revision: str, staged: str, cluster_id: str = "", local: bool = True) -> None:
        """Make the staged file the applied revision. `cluster_id`: the controller's cluster that
        applied it (empty: the last one is kept); `local`: applied per node, not by a controller."""
        previous = self.current()
        with open(staged, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        meta = json.dumps({"revision": revision, "applied_at": time.time(), "sha256": digest,
                           "cluster_id": cluster_id or (previous.cluster_id if previous else ""),
                           "local": local})
        fd, tmp = tempfile.mkstemp(prefix=".meta-", dir=self.state_dir)
        with os.fdopen(fd, "w") as f:
            f.write(meta)
        os.replace(staged, self.fleet_path)
        os.replace(tmp, self.meta_path)


def managed_refusal(node: str, controllers: list[str], action: str,
                    instead: str = "fleetctl config push") -> str:
    """The one line that refuses a per-node change on a node a controller manages."""
    return (f"node {node} is managed by controller {', '.join(controllers)}, which would revert this per-node "
            f"{action}: do it through the controller ({instead}), or pin the node "
            f"(fleetctl nodes pin {node}) and repeat with --force")


def apply_refusal(node: str, controllers: list[str], *, cluster_id: str, force: bool, dry_run: bool,
                  role: str) -> str:
    """Why an ApplyConfig may not be carried out on this node ("" when it may).

    A controller's push carries its cluster identity; only a controller may send one (under
    TLS the certificate says who calls, `role`; in plaintext nobody is verified, ""). A
    controller's certificate is enough (a controller from before cluster identities sends
    none). Otherwise the apply is per node: on a node with controllers it needs `force`, and
    then shows as drift. A dry run changes nothing and is always allowed."""
    if cluster_id and role not in ("controller", ""):
        return "only a controller's ApplyConfig carries a cluster identity"
    if dry_run or cluster_id or role == "controller" or force or not controllers:
        return ""
    return managed_refusal(node, controllers, "config apply")


def control_refusal(node: str, controllers: list[str], action: str, fleet_groups: list[str], *,
                    cluster_id: str, force: bool, role: str) -> str:
    """Why a start or stop may not be carried out ("" when it may): per node (no cluster
    identity, not a controller's certificate), without `force`, on programs of the fleet
    revision (`fleet_groups`, the ones the call reaches) of a node with controllers."""
    if not fleet_groups or not controllers or force or cluster_id or role == "controller":
        return ""
    where = " ".join(f"{node}:{g}:*" for g in fleet_groups)
    return managed_refusal(node, controllers, f"{action} of fleet program {', '.join(fleet_groups)}",
                           f"fleetctl {action} {where}")


@dataclass(frozen=True)
class Plan:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def file_fingerprints(config: Config, fleet_file: str | None) -> dict[str, str]:
    """Content hashes of the node's own files (not the fleet file): to notice hand edits."""
    prints = {}
    for path in (config.path, *config.included_files):
        if path == fleet_file:
            continue
        try:
            with open(path, "rb") as f:
                prints[path] = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            prints[path] = "missing"
    return prints


class FleetConfig:
    """Applies revisions to a running core. `loader(fleet_file)` parses the node's config with
    that fleet file included (the same path and flags the daemon started with)."""

    def __init__(self, core: Supervisor, store: RevisionStore, loader: Callable[[str], Config]) -> None:
        self.core = core
        self.store = store
        self.loader = loader
        self.fingerprints = file_fingerprints(core.config, store.fleet_file())

    def edited_by_hand(self) -> bool:
        return file_fingerprints(self.core.config, self.store.fleet_file()) != self.fingerprints

    async def apply(self, revision: str, text: str, *, dry_run: bool, caller: Caller,
                    permit: Callable[[list[GroupConfig]], Awaitable[None]] | None = None,
                    cluster_id: str = "", local: bool = True) -> Plan:
        """Validate the revision with the node's file; unless dry_run, persist it, then stop
        removed groups, restart changed ones and add new ones. Raises ConfigError; on error
        nothing is changed, on disk or in the running state. `permit` sees the groups the plan
        touches (new ones as they will be, removed ones as they are) and raises to refuse.
        `cluster_id` and `local`: who applied it (RevisionStore.commit)."""
        staged = self.store.stage(text)
        try:
            try:
                # Off the loop: a big config must not stall status calls while it parses. The
                # parse only reads files; it touches no live state.
                new = await asyncio.to_thread(self.loader, staged)
            except ConfigError as exc:  # name the revision, not the temp file it was staged in
                exc.message = exc.message.replace(staged, f"revision {revision}")
                if exc.file == staged:
                    exc.file = f"revision {revision}"
                raise
            running = [g.config for g in self.core.groups.values()]
            plan = Plan(*diff_groups(new.groups, running))
            if permit is not None:
                touched, removed = {*plan.added, *plan.changed}, set(plan.removed)
                await permit([g for g in new.groups if g.name in touched] + [g for g in running if g.name in removed])
            if dry_run:
                return plan
            self.store.commit(revision, staged, cluster_id, local)
        finally:
            if os.path.exists(staged):
                os.unlink(staged)
        await self._update(new, plan, caller)
        self.fingerprints = file_fingerprints(self.core.config, self.store.fleet_file())
        return plan

    async def _update(self, new: Config, plan: Plan, caller: Caller) -> None:
        core = self.core
        core.group_configs = new.groups
        # In slices that yield to the loop: status calls and signals are answered between
        # them, however many groups the revision adds or removes.
        for i, name in enumerate(plan.removed + plan.changed, 1):
            await operations.stop_group(core, caller, name, wait=True)
            core.remove_group(name)
            if i % operations.SLICE == 0:
                await asyncio.sleep(0)
        configs = {g.name: g for g in new.groups}
        adding = plan.changed + plan.added
        # every AUTO log file in one worker thread: thousands of file creations, off the loop
        logs = await asyncio.to_thread(lambda: {name: core.make_auto_logs(configs[name]) for name in adding})
        for i, name in enumerate(adding, 1):
            await operations.add_group_config(core, caller, configs[name], logs[name])
            if i % operations.SLICE == 0:
                await asyncio.sleep(0)

