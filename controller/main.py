"""`fleetvisor-controller`: the fleet's desired state in etcd, live state from every agent.

    fleetvisor-controller [--etcd embedded | --etcd HOST:PORT[,HOST:PORT...]] [--listen HOST:PORT]
                          [--cluster NAME] [--state-dir DIR] [--tls-cert F --tls-key F --tls-ca F]
                          [--xmlrpc-listen HOST:PORT|unix:PATH [--xmlrpc-user NAME]]
                          [--http-listen HOST:PORT [--http-anonymous-read] [--http-insecure]]

Stateless: everything durable is in etcd, so any number may run against one etcd; one leads.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from fleetvisor.agent.grpcapi.standard import Health
from fleetvisor.agent.security.guard import (
    CONTROLLER_SERVES,
    LOOPBACK,
    PEER_SERVES,
    Gate,
    Guard,
    InsecureListen,
    Mode,
    mode_for,
)
from fleetvisor.agent.security.identity import Identity
from fleetvisor.agent.security.rules import CONTROLLER_SERVICE, PEER_SERVICE
from fleetvisor.agent.security.tlsfiles import Check, TlsFileError, TlsFiles, TlsMaterial
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import peer_pb2_grpc as ppb_grpc

from .acl import Acl
from .audit import Refusals
from .compaction import CompactionPolicy, Compactor
from .dashboard.face import DashboardConfigError, DashboardFace, DashboardSettings
from .dashboard.tokens import Tokens, ensure_key
from .election import Election
from .embedded import EmbeddedEtcd
from .etcd import EtcdError, EtcdSettings, connect_waiting
from .fleet import Fleet
from .leadership import Leadership, identity
from .metrics import (
    BuildCollector,
    FleetCollector,
    GrpcTiming,
    MetricsConfigError,
    MetricsServer,
    OperationsCollector,
    ReconcileCollector,
    check_listen,
    etcd_histogram,
    grpc_histogram,
    service_methods,
)
from .mirror import Mirror
from .operations import Operations
from .peerservice import PeerServicer
from .reconcile import MAX_PUSH_CONCURRENCY, PUSH_CONCURRENCY, Reconciler
from .records import LEADER, prefix_of
from .registrations import MAX_HEARTBEAT_RATE
from .service import ControllerServicer, register
from .serving import report_serving
from .unreadable import Unreadable
from .xmlrpc_face import XmlRpcConfigError, XmlRpcFace, XmlRpcSettings

log = logging.getLogger("fleetvisor.controller")


class StartupError(Exception):
    """Why the controller cannot start, in one line."""


DEFAULT_STATE_DIR = "/var/lib/fleetvisor-controller"  # the systemd unit's StateDirectory


def default_state_dir() -> str:
    """One path whoever runs the controller: a state dir that depended on the user (root or not)
    started a second, empty embedded etcd when the same controller was run another way."""
    return DEFAULT_STATE_DIR


def check_state_dir(path: Path) -> None:
    """The embedded etcd's data dir can be made and written; else one line that says what to pass."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
    except OSError as exc:
        raise StartupError(f"cannot use state dir {path} for the embedded etcd ({exc.strerror or exc}): "
                           "pass --state-dir DIR (the same one every time: it holds the fleet's data)") from None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="fleetvisor-controller",
        description="Keep a fleetvisor fleet's desired state in etcd and drive its agents.",
        epilog="examples:\n"
               "  fleetvisor-controller                       # private etcd under the state dir\n"
               "  fleetvisor-controller --etcd 10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379 \\\n"
               "      --listen 0.0.0.0:7400 --advertise ctl-1.example:7400 \\\n"
               "      --tls-cert ctl.pem --tls-key ctl.key --tls-ca ca.pem",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--etcd", default="embedded", metavar="ENDPOINTS",
                   help="'embedded' (default: start a private etcd under the state dir) or HOST:PORT,...")
    p.add_argument("--etcd-ca", type=Path, metavar="FILE", help="CA of etcd's certificate (turns TLS on)")
    p.add_argument("--etcd-cert", type=Path, metavar="FILE", help="client certificate for etcd")
    p.add_argument("--etcd-key", type=Path, metavar="FILE", help="client key for etcd")
    p.add_argument("--etcd-user", help="etcd user (password from $FLEETVISOR_ETCD_PASSWORD)")
    p.add_argument("--etcd-wait", type=float, default=30.0, metavar="SECONDS",
                   help="at startup, wait this long for etcd to answer before giving up (default %(default)s)")
    p.add_argument("--listen", default="127.0.0.1:7400", metavar="HOST:PORT", help="gRPC address (default %(default)s)")
    p.add_argument("--advertise", metavar="HOST:PORT",
                   help="address other controllers and fleetctl reach this one at (default: --listen)")
    p.add_argument("--tls-cert", metavar="FILE", help="certificate for gRPC (server and client to agents)")
    p.add_argument("--tls-key", metavar="FILE")
    p.add_argument("--tls-ca", metavar="FILE", help="CA that signs agents' and clients' certificates")
    p.add_argument("--insecure", action="store_true",
                   help="serve plaintext off loopback: anyone who reaches the port may do anything")
    p.add_argument("--cluster", default="default", help="cluster name: the etcd key prefix /fleetvisor/NAME/")
    p.add_argument("--state-dir", default=None, metavar="DIR",
                   help=f"the embedded etcd's data: the fleet's desired state (default {DEFAULT_STATE_DIR}, whoever "
                        "runs the controller; pass the same DIR every time)")
    p.add_argument("--node-ttl", type=int, default=10, metavar="SECONDS",
                   help="a node is down this long after its last heartbeat (default %(default)s)")
    p.add_argument("--max-heartbeat-rate", type=float, default=MAX_HEARTBEAT_RATE, metavar="N",
                   help="heartbeats a second this controller asks for at most: past N x TTL/3 nodes it tells them to "
                        "heartbeat less often, and a silent node is down after three of their intervals "
                        "(0: no bound; default %(default)s)")
    p.add_argument("--leader-ttl", type=int, default=5, metavar="SECONDS",
                   help="another controller leads, and the others follow a dead controller's share of the agents, "
                        "this long after it dies (at most --node-ttl; default %(default)s)")
    p.add_argument("--command-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="per-node deadline of fanned-out commands (default %(default)s)")
    p.add_argument("--push-concurrency", type=int, default=PUSH_CONCURRENCY, metavar="N",
                   help=f"config pushes (ApplyConfig) in flight at once, as the leader (1-{MAX_PUSH_CONCURRENCY}; "
                        "default %(default)s)")
    p.add_argument("--id", help="this controller's name (default HOSTNAME:PORT)")
    p.add_argument("--compact-interval", type=float, default=CompactionPolicy.interval, metavar="SECONDS",
                   help="the leader compacts etcd's history this often; 0: never, etcd or the operator does "
                        "(default %(default)s)")
    p.add_argument("--compact-retention", type=int, default=CompactionPolicy.retention, metavar="REVISIONS",
                   help="revisions of history kept by each compaction (default %(default)s)")
    p.add_argument("--xmlrpc-listen", metavar="HOST:PORT|unix:PATH",
                   help="also serve the fleet as one supervisord (XML-RPC and /logtail) for the stock supervisorctl "
                        "and supervisord tools; off loopback only with --xmlrpc-user")
    p.add_argument("--xmlrpc-user", metavar="NAME",
                   help="basic-auth user of --xmlrpc-listen (password from $FLEETVISOR_XMLRPC_PASSWORD or "
                        "--xmlrpc-password-file; {SHA}hex accepted); policies see it as this operator")
    p.add_argument("--xmlrpc-password-file", type=Path, metavar="FILE", help="file holding --xmlrpc-user's password")
    p.add_argument("--xmlrpc-role", choices=("operator", "viewer"), default="operator",
                   help="the role --xmlrpc-user has in policies (default %(default)s; a viewer only reads)")
    p.add_argument("--xmlrpc-groups", default="", metavar="G,...",
                   help="groups of --xmlrpc-user in policies (admins: everything everywhere)")
    p.add_argument("--metrics-listen", metavar="HOST:PORT",
                   help="serve Prometheus /metrics over HTTP here (no auth: loopback only unless --metrics-insecure)")
    p.add_argument("--metrics-insecure", action="store_true",
                   help="allow --metrics-listen off loopback: anyone who reaches the port reads the metrics")
    p.add_argument("--http-listen", metavar="HOST:PORT",
                   help="serve the fleet dashboard here: HTTPS with --tls-*, else plaintext on loopback only "
                        "(log in with `fleetctl dashboard-login`)")
    p.add_argument("--http-advertise", metavar="HOST:PORT",
                   help="address browsers reach the dashboard at, for the URL dashboard-login prints "
                        "(default: --http-listen)")
    p.add_argument("--http-insecure", action="store_true",
                   help="allow --http-listen in plaintext off loopback: sessions travel unencrypted")
    p.add_argument("--http-anonymous-read", action="store_true",
                   help="let visitors without a login read the dashboard (never write)")
    args = p.parse_args(argv)
    if (args.http_insecure or args.http_anonymous_read or args.http_advertise) and not args.http_listen:
        p.error("--http-insecure, --http-anonymous-read and --http-advertise go with --http-listen")
    if (args.tls_cert or args.tls_key or args.tls_ca) and not (args.tls_cert and args.tls_key and args.tls_ca):
        p.error("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
    if args.etcd == "embedded" and (args.etcd_ca or args.etcd_cert or args.etcd_key or args.etcd_user):
        p.error("--etcd-ca, --etcd-cert, --etcd-key and --etcd-user are for an external etcd (--etcd HOST:PORT,...); "
                "the embedded etcd is plaintext on loopback, without users")
    if not 1 <= args.push_concurrency <= MAX_PUSH_CONCURRENCY:
        p.error(f"--push-concurrency must be 1 to {MAX_PUSH_CONCURRENCY}")
    if args.node_ttl < 2 or args.leader_ttl < 2:
        p.error("--node-ttl and --leader-ttl must be at least 2 seconds")
    if not 0 <= args.max_heartbeat_rate <= 1e6:  # NaN fails too
        p.error("--max-heartbeat-rate must be 0 (no bound) or a positive number of heartbeats a second")
    if args.compact_interval < 0 or args.compact_retention < 1:
        p.error("--compact-interval must be 0 or more seconds and --compact-retention at least 1 revision")
    if args.metrics_insecure and not args.metrics_listen:
        p.error("--metrics-insecure goes with --metrics-listen")
    if (args.xmlrpc_user or args.xmlrpc_password_file) and not args.xmlrpc_listen:
        p.error("--xmlrpc-user and --xmlrpc-password-file go with --xmlrpc-listen")
    return args


def xmlrpc_settings(args: argparse.Namespace) -> XmlRpcSettings:
    """The endpoint's settings; the password is read here and never logged."""
    password = None
    if args.xmlrpc_password_file is not None:
        try:
            password = args.xmlrpc_password_file.read_text().strip() or None
        except OSError as exc:
            raise StartupError(f"--xmlrpc-password-file {args.xmlrpc_password_file}: "
                               f"{exc.strerror or exc}") from None
    elif args.xmlrpc_user is not None:
        password = os.environ.get("FLEETVISOR_XMLRPC_PASSWORD") or None
    groups = frozenset(g.strip() for g in args.xmlrpc_groups.split(",") if g.strip())
    settings = XmlRpcSettings(args.xmlrpc_listen, args.xmlrpc_user, password, args.xmlrpc_role, groups,
                              args.cluster)
    try:
        settings.check()
    except XmlRpcConfigError as exc:
        raise StartupError(str(exc)) from None
    return settings


def _mode(host: str, tls: object, insecure: bool) -> Mode:
    try:
        return mode_for(host, bool(tls), insecure)
    except InsecureListen as exc:
        raise StartupError(f"{exc}: pass --tls-cert, --tls-key and --tls-ca (see deploy/TLS.md), or --insecure "
                           "to let anyone who reaches the port control the fleet") from None


def _metrics_address(args: argparse.Namespace) -> tuple[str, int] | None:
    if not args.metrics_listen:
        return None
    try:
        return check_listen(args.metrics_listen, args.metrics_insecure)
    except MetricsConfigError as exc:
        raise StartupError(str(exc)) from None


def _unauthenticated(peer: str) -> None:
    log.warning("unauthenticated connection from %s (--insecure)", peer)


def _controller_of(cluster: str) -> Check:
    """Whether a certificate (at startup, or rotated in) is a controller's of this cluster."""
    def check(own: Identity) -> str | None:
        if own.role == "controller" and own.cluster == cluster:
            return None
        return (f"cluster {own.cluster!r}, not a controller of cluster {cluster!r}; re-issue it with "
                f"`fleetctl certs issue --role controller --node NAME --cluster {cluster}`")
    return check


def _tls(args: argparse.Namespace) -> TlsMaterial | None:
    if not args.tls_cert:
        return None
    try:
        return TlsMaterial(TlsFiles(args.tls_cert, args.tls_key, args.tls_ca), _controller_of(args.cluster),
                           lambda line, trouble: log.log(logging.WARNING if trouble else logging.INFO, "%s", line))
    except TlsFileError as exc:
        raise StartupError(f"--tls-cert: {exc}") from None


async def run(args: argparse.Namespace) -> None:
    tls = _tls(args)
    xmlrpc = xmlrpc_settings(args) if args.xmlrpc_listen else None
    metrics_at = _metrics_address(args)
    registry = CollectorRegistry(auto_describe=False)
    # timed only when someone may scrape: without --metrics-listen nothing is observed
    interceptors: list[grpc.aio.ServerInterceptor] = []
    observe_etcd = None
    if metrics_at is not None:
        interceptors.append(GrpcTiming(grpc_histogram(registry),
                                       service_methods(*pb.DESCRIPTOR.services_by_name.values())))
        observe_etcd = etcd_histogram(registry)
    state_dir = Path(args.state_dir or default_state_dir())
    embedded = None
    if args.etcd == "embedded":
        check_state_dir(state_dir)
        embedded = EmbeddedEtcd(state_dir / "etcd")
        endpoints = [await embedded.start()]
        log.info("embedded etcd at %s (data in %s)", endpoints[0], state_dir / "etcd")
    else:
        endpoints = [e.strip() for e in args.etcd.split(",") if e.strip()]
    closers = []
    try:
        client = await connect_waiting(
            EtcdSettings(endpoints=endpoints, ca=args.etcd_ca, cert=args.etcd_cert, key=args.etcd_key,
                         user=args.etcd_user, password=os.environ.get("FLEETVISOR_ETCD_PASSWORD"),
                         observe=observe_etcd),
            args.etcd_wait, lambda line: log.warning("%s", line))
        closers.append(client.close)
        host = args.listen.rpartition(":")[0]
        gate = Gate(_mode(host, tls, args.insecure), cluster=args.cluster, roles=CONTROLLER_SERVES,
                    service_roles={PEER_SERVICE: PEER_SERVES},
                    on_unauthenticated=_unauthenticated)
        server = grpc.aio.server(interceptors=[*interceptors, Guard(gate)],
                                 options=[("grpc.http2.min_recv_ping_interval_without_data_ms", 1000),
                                          ("grpc.http2.max_ping_strikes", 0)])
        if tls:
            port = server.add_secure_port(args.listen, tls.server_credentials())
        else:
            port = server.add_insecure_port(args.listen)
        if not port:
            raise StartupError(f"cannot listen on {args.listen}: address in use or not available")
        advertise = args.advertise or f"{host if host not in ('', '0.0.0.0', '[::]') else socket.getfqdn()}:{port}"
        controller_id = args.id or f"{socket.gethostname()}:{port}"
        prefix = prefix_of(args.cluster)

        mirror = Mirror(client, prefix)
        await mirror.start()
        closers.append(mirror.close)
        # a dead controller's share is taken over when its lease expires: as soon as a new leader leads
        fleet = Fleet(client, mirror, controller_id, node_ttl=args.node_ttl, tls=tls, advertise=advertise,
                      controller_ttl=args.leader_ttl, max_heartbeat_rate=args.max_heartbeat_rate)
        cluster_id = await fleet.identify()
        closers.append(fleet.close)
        await fleet.start()
        acl = Acl(mirror, gate)
        acl.start()
        Unreadable(mirror).start()
        refusals = Refusals(client, prefix, controller_id)
        gate.on_refusal = refusals
        reconciler = Reconciler(fleet, concurrency=args.push_concurrency)
        me = identity(controller_id, advertise)
        operations = Operations(fleet, me)
        election = Election(client, prefix + LEADER, me, args.leader_ttl)

        compactor = Compactor(client, mirror, CompactionPolicy(args.compact_interval, args.compact_retention))

        async def duties() -> None:
            await asyncio.gather(reconciler.run(), operations.run(), compactor.run())
        leadership = Leadership(election, duties)
        health = Health(server, [CONTROLLER_SERVICE])
        report_serving(health, mirror, election)
        await election.start()
        # resigning revokes our lease: pointless (and a wait for a timeout) without an etcd
        closers.append(lambda: election.close(resign=embedded is None or embedded.running))
        closers.append(leadership.close)
        servicer = ControllerServicer(fleet, leadership, operations,
                                      command_timeout=args.command_timeout, acl=acl, refusals=refusals)
        register(server, servicer)
        peer_servicer = PeerServicer(fleet.links, controller_id)
        ppb_grpc.add_PeerServiceServicer_to_server(peer_servicer, server)
        servicer.tokens = Tokens(await ensure_key(fleet.store), args.cluster)
        servicer.tokens.follow(fleet.store.mirror)  # for the mirror's lifetime: rotations by any controller
        dashboard = None
        if args.http_listen:
            try:
                dashboard = DashboardFace(
                    DashboardSettings(args.http_listen, args.http_insecure, args.http_anonymous_read,
                                      args.http_advertise or ""),
                    servicer=servicer, gate=gate, fleet=fleet, leadership=leadership, tokens=servicer.tokens,
                    tls=tls)
            except DashboardConfigError as exc:
                raise StartupError(str(exc)) from None
            servicer.dashboard_url = dashboard.url
        await server.start()
        closers.append(lambda: server.stop(grace=1.0))
        if xmlrpc is not None:
            try:
                face = XmlRpcFace(xmlrpc, fleet, leadership, servicer.checks, refusals,
                                  command_timeout=args.command_timeout)
            except XmlRpcConfigError as exc:
                raise StartupError(str(exc)) from None
            await face.start()
            closers.append(face.close)
            log.info("%s", face.describe())
            if xmlrpc.username is not None and xmlrpc.unix_path is None and xmlrpc.address()[0] not in LOOPBACK:
                log.warning("XML-RPC on %s sends its basic-auth password in plaintext (as supervisord's "
                            "inet_http_server): keep it on a trusted network or behind a TLS proxy", xmlrpc.listen)
        if dashboard is not None:
            await dashboard.start()
            closers.append(dashboard.close)
            log.info("%s", dashboard.describe())
        if metrics_at is not None:
            registry.register(FleetCollector(fleet, leadership))
            registry.register(OperationsCollector(operations))
            registry.register(ReconcileCollector(reconciler))
            registry.register(BuildCollector())
            metrics = MetricsServer(registry, *metrics_at)
            metrics_port = await metrics.start()
            closers.append(metrics.close)
            log.info("Prometheus /metrics on http://%s:%d/metrics", metrics_at[0], metrics_port)
        closers.append(health.close)  # (closed in reverse) NOT_SERVING before the server goes
        log.info("controller %s serving on %s:%d (%s), cluster %r (identity %s), etcd %s", controller_id, host,
                 port, gate.mode.value, args.cluster, cluster_id, ",".join(endpoints))
        if gate.mode is Mode.INSECURE:
            log.critical("gRPC on %s is not using TLS (--insecure): anyone who reaches it controls the fleet",
                         args.listen)
        await _until_signalled(tls, embedded)
        log.info("shutting down")
    finally:
        for close in reversed(closers):
            try:
                await close()
            except Exception as exc:  # shutting down: report and go on closing the rest
                log.warning("while shutting down: %s", exc)
        if embedded is not None:
            await embedded.stop()


async def _until_signalled(tls: TlsMaterial | None, embedded: EmbeddedEtcd | None) -> None:
    """Until SIGTERM or SIGINT. SIGHUP takes rotated TLS files at once (they are also taken
    when a connection finds them changed); existing connections and streams carry on.

    Meanwhile the embedded etcd, if any, is restarted whenever it dies; when it cannot be, its
    EtcdError ends this (and the controller, non-zero) instead."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: tls is not None and tls.refresh(force=True))
    if embedded is None:
        await stop.wait()
        return
    stopped = asyncio.create_task(stop.wait(), name="until signalled")
    supervised = asyncio.create_task(embedded.supervise(), name="embedded etcd")
    try:
        await asyncio.wait([stopped, supervised], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopped, supervised):
            task.cancel()
        await asyncio.wait([stopped, supervised])
    if supervised.done() and not supervised.cancelled() and supervised.exception() is not None:
        raise supervised.exception()  # type: ignore[misc]


# Young collections every 50,000 allocations, not CPython's 700: a status of thousands of nodes
# builds tens of thousands of objects, and at 700 nearly all of them reached the oldest generation
# while still in use, so full collections (0.35-0.4 s each at 5000 nodes, with nothing to free)
# came every few seconds and were a summary's p99. With these, at 5000 nodes, no collection
# during a run of summaries took over 20 ms, and the slowest of 60 summaries was 152 ms (530 before).
GC_THRESHOLDS = (50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    gc.set_threshold(*GC_THRESHOLDS)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("aetcd").setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except (StartupError, EtcdError) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
