#!/usr/bin/env bash
# A local demo fleet on loopback: a controller with its embedded etcd and three agents, every
# gRPC link mutual TLS with role certificates from `fleetctl certs` (made once, kept in $RUN/pki).
#   bash deploy/demo.sh          set up (if needed), start the fleet in the background, show its status
#   bash deploy/demo.sh stop     stop the agents (and their programs), the controller and etcd
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${FLEETVISOR_DEMO_DIR:-deploy/demo/run}  # where the demo keeps its state and logs
CONTROLLER=127.0.0.1:7400
NODES=(demo-1 demo-2 demo-3)
LABELS=("role=web,zone=a" "role=web,zone=b" "role=batch,zone=a")
CLUSTER=demo
OPERATOR=admin  # an operator in group admins: may do everything
VIEWER=guest    # a viewer: may only read

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_fleet() {
    for node in "${NODES[@]}"; do
        pidfile="$RUN/$node/supervisord.pid"
        if alive "$pidfile"; then
            kill "$(cat "$pidfile")"
            echo "stopping agent $node"
        fi
    done
    for node in "${NODES[@]}"; do
        while alive "$RUN/$node/supervisord.pid"; do sleep 0.1; done
    done
    if alive "$RUN/controller.pid"; then
        kill "$(cat "$RUN/controller.pid")"
        echo "stopping the controller (and its etcd)"
        while alive "$RUN/controller.pid"; do sleep 0.1; done
    fi
    rm -f "$RUN/controller.pid"
}

if [ "${1:-}" = "stop" ]; then
    stop_fleet
    echo "demo stopped (its state is kept in $RUN; delete that folder to start afresh)"
    exit 0
fi

bash deploy/setup.sh
if alive "$RUN/controller.pid"; then
    echo "the demo is already running; stop it with: bash deploy/demo.sh stop" >&2
    exit 1
fi
for port in 7400 7401 7402 7403 9001 9002 9003; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port on 127.0.0.1 is in use; the demo needs 7400-7403 and 9001-9003" >&2
        exit 1
    fi
done
mkdir -p "$RUN"
SHOWN=$RUN               # as given, for the hints printed at the end
RUN=$(cd "$RUN" && pwd)  # absolute: the configs name their certificate files by it
PKI=$RUN/pki

fleetctl() { .venv/bin/fleetctl "$@"; }
# issue NAME ARGS...: each certificate once; a second run reuses it (certs issue never overwrites)
issue() { [ -f "$PKI/$1.pem" ] || fleetctl certs issue --cluster "$CLUSTER" --dir "$PKI" "${@:2}" > /dev/null; }
if [ ! -f "$PKI/ca.key" ]; then
    echo "making the demo's CA and role certificates in $PKI"
    fleetctl certs init --dir "$PKI" > /dev/null
fi
issue ctl-1 --role controller --node ctl-1 --host 127.0.0.1
for node in "${NODES[@]}"; do issue "$node" --role agent --node "$node" --host 127.0.0.1; done
issue "$OPERATOR" --role operator --user "$OPERATOR" --group admins
issue "$VIEWER" --role viewer --user "$VIEWER"
# fleetctl's config files (cli/settings.py): the controller, and whose certificate to show it
for who in "$OPERATOR" "$VIEWER"; do
    file=$RUN/fleetctl.toml; [ "$who" = "$VIEWER" ] && file=$RUN/fleetctl-$VIEWER.toml
    printf 'controller = "%s"\ntls_cert = "%s"\ntls_key = "%s"\ntls_ca = "%s"\n' \
        "$CONTROLLER" "$PKI/$who.pem" "$PKI/$who.key" "$PKI/ca.pem" > "$file"
done

trap 'echo "the demo did not come up; see $RUN/*.log and $RUN/*/supervisord.log" >&2; stop_fleet' ERR

echo "starting the controller on $CONTROLLER (embedded etcd in $RUN/controller)"
nohup .venv/bin/fleetvisor-controller --listen "$CONTROLLER" --cluster "$CLUSTER" --state-dir "$RUN/controller" \
    --node-ttl 6 --tls-cert "$PKI/ctl-1.pem" --tls-key "$PKI/ctl-1.key" --tls-ca "$PKI/ca.pem" \
    > "$RUN/controller.log" 2>&1 &
echo $! > "$RUN/controller.pid"

for i in "${!NODES[@]}"; do
    node=${NODES[$i]}
    mkdir -p "$RUN/$node"
    sed -e "s/@NODE@/$node/g" -e "s/@LABELS@/${LABELS[$i]}/" -e "s/@HTTP_PORT@/900$((i + 1))/" \
        -e "s/@GRPC_PORT@/740$((i + 1))/" -e "s|@PKI@|$PKI|" deploy/demo/agent.conf > "$RUN/$node/supervisord.conf"
    echo "starting agent $node (gRPC 127.0.0.1:740$((i + 1)), web page http://127.0.0.1:900$((i + 1))/)"
    .venv/bin/fleetvisor-agent -c "$RUN/$node/supervisord.conf"   # daemonizes, as supervisord does
done

export FLEETCTL_CONFIG=$RUN/fleetctl.toml
wait_until() {  # wait_until SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what=$2; shift 2
    until "$@" > /dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then echo "timed out waiting for $what" >&2; return 1; fi
        sleep 0.2
    done
}
nodes_up() { [ "$(fleetctl -o json nodes | .venv/bin/python -c 'import json,sys; print(sum(n.get("up", False) for n in json.load(sys.stdin)["nodes"]))')" = 3 ]; }
in_sync() { fleetctl -o json config status | .venv/bin/python -c 'import json,sys; sys.exit(not all(n.get("in_sync") for n in json.load(sys.stdin)["nodes"]))'; }

wait_until 30 "the controller" fleetctl leader
wait_until 30 "three agents to register" nodes_up
fleetctl config push deploy/demo/web.conf --name web --label role=web -m "demo: web group and worker"
fleetctl config push deploy/demo/batch.conf --name batch --label role=batch -m "demo: worker and a flaky program"
wait_until 30 "the configs to be applied" in_sync
sleep 1.5  # let web's startsecs=1 pass so the first status shows RUNNING
trap - ERR

fleetctl status || true
cat <<EOF

The demo fleet runs in the background: a controller on $CONTROLLER (with its own etcd) and
three agents, demo-1 and demo-2 (role=web) and demo-3 (role=batch), over mutual TLS.
fleetctl.toml makes fleetctl the operator $OPERATOR (group admins: may do everything). Try:

  export FLEETCTL_CONFIG=$SHOWN/fleetctl.toml
  .venv/bin/fleetctl status --watch                    # live view; Ctrl-C leaves it
  .venv/bin/fleetctl nodes
  .venv/bin/fleetctl restart '*:web:*' --label role=web # restart the web group on both web nodes
  .venv/bin/fleetctl config history web
  .venv/bin/fleetctl tail -f demo-1:web:web_00
  .venv/bin/fleetctl audit
  .venv/bin/fleetctl --node 127.0.0.1:7401 status      # one agent directly, without the controller
  .venv/bin/supervisorctl -c $SHOWN/demo-1/supervisord.conf status   # the stock client
  FLEETCTL_CONFIG=$SHOWN/fleetctl-$VIEWER.toml .venv/bin/fleetctl restart all   # a viewer: refused
  web pages: http://127.0.0.1:9001/ http://127.0.0.1:9002/ http://127.0.0.1:9003/

Stop it with: bash deploy/demo.sh stop
EOF
