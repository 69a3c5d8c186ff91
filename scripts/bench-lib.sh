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
WEIR=${BENCH_WEIR:-$ROOT/target/release/weir}
TOOL=$ROOT/target/release/weir-bench
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
# three client URLs, comma-separated, and NATS_PIDS. Use with --replicas 3.
# NATS_SYNC=always: fsync every write (JetStream's sync_interval).
start_nats_cluster() {
  local i port route monitor ports=() routes=() urls=()
  NATS_PIDS=()
  for i in 1 2 3; do ports+=("$(free_port) $(free_port) $(free_port)"); done
  for i in 0 1 2; do
    read -r port route monitor <<<"${ports[$i]}"
    urls+=("nats://127.0.0.1:$port")
  done
  for i in 0 1 2; do
    read -r port route monitor <<<"${ports[$i]}"
    routes=()
    for j in 0 1 2; do
      [ "$j" = "$i" ] && continue
      routes+=("\"nats-route://127.0.0.1:$(cut -d' ' -f2 <<<"${ports[$j]}")\"")
    done
    mkdir -p "$BENCH_DIR/n$((i + 1))"
    cat >"$BENCH_DIR/n$((i + 1)).conf" <<CONF
server_name: n$((i + 1))
listen: "127.0.0.1:$port"
http: "127.0.0.1:$monitor"
jetstream { store_dir: "$BENCH_DIR/n$((i + 1))"${NATS_SYNC:+, sync_interval: $NATS_SYNC} }
cluster { name: weir, listen: "127.0.0.1:$route", routes: [$(IFS=,; echo "${routes[*]}")] }
lame_duck_duration: "30s"
lame_duck_grace_period: "1s"
CONF
    "$NATS_BIN" -c "$BENCH_DIR/n$((i + 1)).conf" >"$BENCH_DIR/n$((i + 1)).log" 2>&1 &
    NATS_PIDS+=($!); PIDS+=($!)
  done
  for i in 0 1 2; do
    read -r port route monitor <<<"${ports[$i]}"
    wait_port "$port" "nats n$((i + 1))"
    wait_ready "http://127.0.0.1:$monitor/healthz" "nats n$((i + 1))"
  done
  NATS_URL=$(IFS=,; echo "${urls[*]}")
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
