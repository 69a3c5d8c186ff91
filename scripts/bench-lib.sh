#!/usr/bin/env bash
# Shared by scripts/bench-<scenario>.sh: starts nats-server, redis-server,
# edges and producers from the release build on free loopback ports, in a
# scratch directory, and kills them all on exit. Source it; don't run it.
#
#   BENCH_DIR      scratch directory (default: a new one under /tmp)
#   BENCH_KEEP=1   keep the scratch directory (logs, reports) after the run
#   BENCH_NO_BUILD=1  skip `cargo build --release -p weir -p weir-bench`
#   BENCH_WEIR     run this weir binary instead of the release build (e.g. a
#                  baseline, for before/after runs on the same box); the
#                  load tool is always this checkout's weir-bench
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WEIR=${BENCH_WEIR:-$TARGET/release/weir}
TOOL=$TARGET/release/weir-bench
SECRET=bench-secret-0123456789abcdef-0123456789
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/weir-bench.XXXXXX)}
mkdir -p "$BENCH_DIR"
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${BENCH_KEEP:-0}" != 1 ]; then rm -rf "$BENCH_DIR"; else echo "bench: kept $BENCH_DIR" >&2; fi
}
trap cleanup EXIT INT TERM

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p weir -p weir-bench
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # port what
  local i
  for i in $(seq 1 400); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: $2 did not open port $1" >&2; exit 1
}

wait_ready() { # url what
  local i
  for i in $(seq 1 600); do
    curl -sf -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.05
  done
  echo "bench: $2 not ready at $1" >&2; exit 1
}

# The pinned nats-server that scripts/setup.sh installs; WEIR_NATS_SERVER
# runs another (weir needs 2.11 or later).
NATS_BIN=${WEIR_NATS_SERVER:-$ROOT/.tools/bin/nats-server}
[ -x "$NATS_BIN" ] || { echo "bench: no nats-server at $NATS_BIN: run scripts/setup.sh (or set WEIR_NATS_SERVER)" >&2; exit 1; }
REDIS_BIN=$(command -v redis-server || echo /usr/bin/redis-server)

start_nats() {
  NATS_PORT=$(free_port)
  local monitor=()
  # BENCH_NATS_MONITOR=1: NATS's monitoring endpoint (/varz, /connz) on NATS_MONITOR_PORT.
  if [ "${BENCH_NATS_MONITOR:-0}" = 1 ]; then NATS_MONITOR_PORT=$(free_port); monitor=(-m "$NATS_MONITOR_PORT"); fi
  "$NATS_BIN" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$BENCH_DIR/nats" "${monitor[@]}" >"$BENCH_DIR/nats.log" 2>&1 &
  NATS_PID=$!; PIDS+=("$NATS_PID")
  NATS_URL=nats://127.0.0.1:$NATS_PORT
  wait_port "$NATS_PORT" nats-server
}

# start_nats_cluster: three clustered nodes n1..n3 (JetStream, lame duck
# mode after 1 s), like compose and the cluster tests; sets NATS_URL to all
# three client URLs, comma-separated, NATS_URLS and NATS_MONITORS (one per
# node), and NATS_PIDS. Use with --replicas 3.
# NATS_SYNC=always: fsync every write (JetStream's sync_interval).
# ZONE_DELAY=1ms (ZONE_JITTER=500us): each node in its own "zone": a
# `weir-bench relay` in front of every node's cluster port, which the node
# advertises and the others' routes dial, holds each chunk between nodes for
# ZONE_DELAY ± ZONE_JITTER each way (ZONE_DELAY=0ms: relays without delay).
# Sets RELAY_PIDS and RELAY_PORTS; check_routes_via_relays checks /routez.
start_nats_cluster() {
  local i j port route monitor relay ports=() routes=() urls=() dial=() advertise
  NATS_PIDS=(); NATS_MONITORS=(); RELAY_PIDS=(); RELAY_PORTS=()
  for i in 1 2 3; do ports+=("$(free_port) $(free_port) $(free_port) $(free_port)"); done
  for i in 0 1 2; do
    read -r port route monitor relay <<<"${ports[$i]}"
    urls+=("nats://127.0.0.1:$port")
    NATS_MONITORS+=("http://127.0.0.1:$monitor")
    dial+=("$route")
    [ -z "${ZONE_DELAY:-}" ] || { dial[$i]=$relay; RELAY_PORTS+=("$relay"); }
  done
  for i in 0 1 2; do
    read -r port route monitor relay <<<"${ports[$i]}"
    routes=()
    for j in 0 1 2; do
      [ "$j" = "$i" ] && continue
      routes+=("\"nats-route://127.0.0.1:${dial[$j]}\"")
    done
    advertise=
    [ -z "${ZONE_DELAY:-}" ] || advertise=", advertise: \"127.0.0.1:$relay\""
    mkdir -p "$BENCH_DIR/n$((i + 1))"
    cat >"$BENCH_DIR/n$((i + 1)).conf" <<CONF
server_name: n$((i + 1))
listen: "127.0.0.1:$port"
http: "127.0.0.1:$monitor"
jetstream { store_dir: "$BENCH_DIR/n$((i + 1))"${NATS_SYNC:+, sync_interval: $NATS_SYNC} }
cluster { name: weir, listen: "127.0.0.1:$route"$advertise, routes: [$(IFS=,; echo "${routes[*]}")] }
lame_duck_duration: "30s"
lame_duck_grace_period: "1s"
CONF
    "$NATS_BIN" -c "$BENCH_DIR/n$((i + 1)).conf" >"$BENCH_DIR/n$((i + 1)).log" 2>&1 &
    NATS_PIDS+=($!); PIDS+=($!)
  done
  for i in 0 1 2; do
    read -r port route monitor relay <<<"${ports[$i]}"
    wait_port "$port" "nats n$((i + 1))"
  done
  # The relays start once every node listens on its cluster port (the
  # nodes retry their routes meanwhile).
  for i in 0 1 2; do
    [ -n "${ZONE_DELAY:-}" ] || break
    read -r port route monitor relay <<<"${ports[$i]}"
    "$TOOL" relay --listen "127.0.0.1:$relay" --to "127.0.0.1:$route" --delay "$ZONE_DELAY" \
      --jitter "${ZONE_JITTER:-0ms}" --report-every 1s >"$BENCH_DIR/relay-n$((i + 1)).log" 2>&1 &
    RELAY_PIDS+=($!); PIDS+=($!)
    wait_port "$relay" "relay n$((i + 1))"
  done
  for i in 0 1 2; do
    read -r port route monitor relay <<<"${ports[$i]}"
    wait_ready "http://127.0.0.1:$monitor/healthz" "nats n$((i + 1))"
  done
  NATS_URLS=("${urls[@]}")
  NATS_URL=$(IFS=,; echo "${urls[*]}")
}

# check_routes_via_relays: waits until every node routes to both others,
# then fails unless every route connection goes through a relay: on each
# node, a route's far end is either a relay's listening port (the node
# dialled the relay) or a socket a relay process owns (the relay dialled
# the node on another node's behalf), as `ss` shows.
check_routes_via_relays() {
  local i rc
  for i in $(seq 1 200); do
    rc=0
    python3 - "${RELAY_PORTS[*]}" "${RELAY_PIDS[*]}" "${NATS_MONITORS[@]}" <<'PY' || rc=$?
import json, re, subprocess, sys, urllib.request
listening = set(sys.argv[1].split())
pids = set(sys.argv[2].split())
ss = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True).stdout
relayed = {m[1] for line in ss.splitlines()
           if (m := re.search(r"127\.0\.0\.1:(\d+)\s.*pid=(\d+),", line)) and m[2] in pids}
peers, ends = [], []
for monitor in sys.argv[3:]:
    routes = json.load(urllib.request.urlopen(monitor + "/routez"))["routes"] or []
    peers.append({r.get("remote_name") for r in routes} - {None, ""})
    ends += [str(r["port"]) for r in routes]
if any(len(p) < 2 for p in peers):
    sys.exit(1)  # not every route is up yet
direct = [p for p in ends if p not in listening | relayed]
if direct:
    print(f"bench: routes past the relays, far ends at ports {direct}", file=sys.stderr)
    sys.exit(2)
print(f"bench: {len(ends)} route ends, every one at a relay", file=sys.stderr)
PY
    case $rc in 0) return 0 ;; 2) exit 1 ;; esac
    sleep 0.1
  done
  echo "bench: the nodes did not route to each other" >&2; exit 1
}

# move_stream_leader STREAM NODE: asks the cluster (through n1) to hand
# STREAM's leadership to NODE ($JS.API.STREAM.LEADER.STEPDOWN with a
# preferred placement), and waits until n1's /jsz shows NODE leading it.
move_stream_leader() {
  python3 - "${NATS_URLS[0]#nats://}" "${NATS_MONITORS[0]}" "$1" "$2" <<'PY'
import json, socket, sys, time, urllib.request
hostport, monitor, stream, node = sys.argv[1:]

def leader():
    jsz = json.load(urllib.request.urlopen(monitor + "/jsz?accounts=true&streams=true"))
    for account in jsz.get("account_details") or []:
        for s in account.get("stream_detail") or []:
            if s["name"] == stream:
                return (s.get("cluster") or {}).get("leader")

if leader() != node:
    host, port = hostport.rsplit(":", 1)
    conn = socket.create_connection((host, int(port)), timeout=10)
    body = json.dumps({"placement": {"preferred": node}}).encode()
    conn.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB _INBOX.stepdown 1\r\n'
                 + f"PUB $JS.API.STREAM.LEADER.STEPDOWN.{stream} _INBOX.stepdown {len(body)}\r\n".encode()
                 + body + b"\r\nPING\r\n")
    reply = b""
    while b"MSG _INBOX.stepdown" not in reply or not reply.endswith(b"\r\n"):
        reply += conn.recv(65536)
    conn.close()
    answer = reply[reply.index(b"MSG _INBOX.stepdown"):].split(b"\r\n")[1]
    if b'"success":true' not in answer:
        sys.exit(f"bench: moving {stream}'s leader to {node}: {answer.decode()}")
deadline = time.time() + 30
while leader() != node:
    if time.time() > deadline:
        sys.exit(f"bench: {stream}'s leader is {leader()}, not {node}, 30 s after the step-down")
    time.sleep(0.1)
print(f"bench: {stream} led by {node}", file=sys.stderr)
PY
}

# stop_all: kills every process started so far (to start another topology
# in the same run).
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=(); EDGE_URLS=()
}

start_redis() {
  REDIS_PORT=$(free_port)
  "$REDIS_BIN" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$BENCH_DIR" >"$BENCH_DIR/redis.log" 2>&1 &
  REDIS_PID=$!; PIDS+=("$REDIS_PID")
  REDIS_URL=redis://127.0.0.1:$REDIS_PORT
  wait_port "$REDIS_PORT" redis-server
}

# start_edge NAME [extra flags...]: sets EDGE_URL and EDGE_PID, appends to EDGE_URLS.
EDGE_URLS=()
start_edge() {
  local name=$1; shift
  local port; port=$(free_port)
  RUST_LOG=${BENCH_LOG:-warn} "$WEIR" edge --listen "127.0.0.1:$port" --nats-url "$NATS_URL" \
    --redis-url "$REDIS_URL" --node-id "$name" --secret "$SECRET" --replicas "${REPLICAS:-1}" "$@" >"$BENCH_DIR/$name.log" 2>&1 &
  EDGE_PID=$!; PIDS+=("$EDGE_PID")
  EDGE_URL=http://127.0.0.1:$port
  EDGE_URLS+=("$EDGE_URL")
  wait_ready "$EDGE_URL/readyz" "$name"
}

# start_producer NAME [extra flags...]: sets PRODUCER_PID and PRODUCER_URL (its metrics).
start_producer() {
  local name=$1; shift
  local port; port=$(free_port)
  RUST_LOG=${BENCH_LOG:-warn} "$WEIR" producer --metrics-listen "127.0.0.1:$port" --nats-url "$NATS_URL" \
    --redis-url "$REDIS_URL" --node-id "$name" --replicas "${REPLICAS:-1}" "$@" >"$BENCH_DIR/$name.log" 2>&1 &
  PRODUCER_PID=$!; PIDS+=("$PRODUCER_PID")
  PRODUCER_URL=http://127.0.0.1:$port
  wait_ready "$PRODUCER_URL/readyz" "$name"
}

# NATS, Redis, edge-0 and edge-1 (EDGE0_PID, EDGE1_PID) and one producer
# that takes every session of the run at once.
start_two_edge_stack() { # sessions
  start_nats
  start_redis
  start_edge edge-0
  EDGE0_PID=$EDGE_PID
  start_edge edge-1
  EDGE1_PID=$EDGE_PID
  start_producer producer-0 --concurrency $(($1 + 64))
}

bench() { "$TOOL" "$@"; }
