#!/usr/bin/env bash
# Single NATS node (R1) next to a 3-node cluster (R3), in one run: steady
# (SESSIONS × RATE tokens/s for DURATION) and saturation (SAT_SESSIONS ×
# SAT_TOKENS as fast as possible), one edge and one producer each, with the
# JetStream floor (`weir-bench limit`, on a stream of the same replication)
# and the CPU of every process; then the cluster again with JetStream's
# `sync_interval: always` (fsync every write: what power-loss durability
# costs). Reports land in $OUT (default: a new
# directory under /tmp); a summary table is printed at the end.
#   scripts/bench-cluster.sh
#   DURATION=10s SAT_TOKENS=20000 scripts/bench-cluster.sh
# `scripts/bench-cluster.sh zones`: the cluster across three zones instead
# (below, at run_zones).
source "$(dirname "$0")/bench-lib.sh"
SESSIONS=${SESSIONS:-200} RATE=${RATE:-50} DURATION=${DURATION:-30s}
SAT_SESSIONS=${SAT_SESSIONS:-20} SAT_TOKENS=${SAT_TOKENS:-50000}
OUT=${OUT:-$(mktemp -d /tmp/weir-bench-cluster.XXXXXX)}
mkdir -p "$OUT"

run_topology() { # name replicas [sync_interval]
  local name=$1 watch=()
  REPLICAS=$2 NATS_SYNC=${3:-}
  if [ "$REPLICAS" = 1 ]; then
    start_nats; watch+=(--watch "nats=$NATS_PID")
  else
    start_nats_cluster
    for i in 0 1 2; do watch+=(--watch "nats-n$((i + 1))=${NATS_PIDS[$i]}"); done
  fi
  start_redis
  start_edge edge-0 --max-connections 20000
  start_producer producer-0 --concurrency $((SESSIONS + 64))
  watch+=(--watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" --watch "producer=$PRODUCER_PID")
  bench steady --edge "$EDGE_URL" --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" \
    --nats-url "$NATS_URL" --with-limit --timeout 90s --quiet "${watch[@]}" --out "$OUT/$name-steady.json"
  bench saturation --edge "$EDGE_URL" --sessions "$SAT_SESSIONS" --tokens "$SAT_TOKENS" \
    --nats-url "$NATS_URL" --with-limit --timeout 90s --quiet "${watch[@]}" --out "$OUT/$name-saturation.json"
  stop_all
}

# `zones`: the same cluster with its nodes in three "zones", steady only:
# every route between nodes through a `weir-bench relay` that holds each
# chunk ZONE_DELAY ± ZONE_JITTER each way (default 1ms ± 500us), next to the
# relays without delay and the cluster without relays, ROUNDS times
# (default 2), the order reversed every other round. Weir, Redis and the
# clients sit in n1's zone: edge and producer connect to n1 only.
#   scripts/bench-cluster.sh zones
#   ZONE_DELAY=2ms ZONE_JITTER=0ms ROUNDS=3 scripts/bench-cluster.sh zones
# ZONE_CLUSTERS="no-delay zones": only these (of direct, no-delay, zones).
# ZONE_LEADER=n1 (or n2, n3): WEIR_EVENTS's leader moved to that node
# before the load (default: wherever it was elected; each report says).
# ZONE_SYNC=always: every node with JetStream's sync_interval: always.
run_zones() {
  local delay=${ZONE_DELAY:-1ms} jitter=${ZONE_JITTER:-500us} round name
  local order=(${ZONE_CLUSTERS:-direct no-delay zones})
  for round in $(seq 1 "${ROUNDS:-2}"); do
    for name in "${order[@]}"; do
      case $name in
        direct) run_zone_topology "$round-$name" "" 0ms ;;
        no-delay) run_zone_topology "$round-$name" 0ms 0ms ;;
        zones) run_zone_topology "$round-$name" "$delay" "$jitter" ;;
      esac
    done
    order=($(printf '%s\n' "${order[@]}" | tac))
  done
  echo "uptime after the run: $(uptime)" >"$OUT/uptime.txt"
  python3 "$ROOT/scripts/bench-zones-table.py" "$OUT" "$delay" "$jitter"
  echo "bench-cluster: reports in $OUT" >&2
}

run_zone_topology() { # name relay-delay ("": no relays) jitter
  local name=$1 watch=() i log
  REPLICAS=3 NATS_SYNC=${ZONE_SYNC:-} ZONE_DELAY=$2 ZONE_JITTER=$3
  echo "bench-cluster zones: $name ($(uptime))" >&2
  rm -f "$BENCH_DIR"/relay-n*.log
  start_nats_cluster
  [ -z "$ZONE_DELAY" ] || check_routes_via_relays
  NATS_URL=${NATS_URLS[0]}
  for i in 0 1 2; do watch+=(--watch "nats-n$((i + 1))=${NATS_PIDS[$i]}"); done
  for i in "${!RELAY_PIDS[@]}"; do watch+=(--watch "relay-n$((i + 1))=${RELAY_PIDS[$i]}"); done
  start_redis
  start_edge edge-0 --max-connections 20000
  start_producer producer-0 --concurrency $((SESSIONS + 64))
  watch+=(--watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" --watch "producer=$PRODUCER_PID")
  [ -z "${ZONE_LEADER:-}" ] || move_stream_leader WEIR_EVENTS "$ZONE_LEADER"
  bench steady --edge "$EDGE_URL" --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" \
    --nats-url "$NATS_URL" --timeout 90s --quiet "${watch[@]}" --out "$OUT/$name-steady.json"
  [ -z "$ZONE_DELAY" ] || check_routes_via_relays
  : >"$OUT/$name-relays.txt"
  for log in "$BENCH_DIR"/relay-n*.log; do
    [ -e "$log" ] && grep 'applied delay' "$log" | tail -1 >>"$OUT/$name-relays.txt"
  done
  curl -sf "${NATS_MONITORS[0]}/jsz?accounts=true&streams=true" >"$OUT/$name-jsz.json"
  bench limit --nats-url "$NATS_URL" --json "${watch[@]}" >"$OUT/$name-limit.json"
  echo "$(uptime)" >"$OUT/$name-uptime.txt"
  stop_all
}

if [ "${1:-}" = zones ]; then
  run_zones
  exit 0
fi

run_topology single 1
run_topology r3 3
run_topology r3-sync 3 always

python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = []
for scenario in ("steady", "saturation"):
    base = None
    for topo in ("single", "r3", "r3-sync"):
        r = json.loads((out / f"{topo}-{scenario}.json").read_text())
        lim = {row["what"]: row for row in (r.get("limit") or {}).get("rows", [])}
        batch = next((v for k, v in lim.items() if k.startswith("jetstream publish") and "1 event(s)" not in k), None)
        paced = next((v for k, v in lim.items() if k.startswith("jetstream paced")), None)
        cpu = " ".join(f"{c['name']} {100 * c['cores']:.0f}%" for c in r["cpu"])
        total = sum(c["cores"] for c in r["cpu"])
        v = r["verify"]
        eps = r["events_per_s"]
        base = base or eps
        rows.append((scenario, topo, f"{eps:,.0f}", f"{eps / base:.2f}",
                     f"{r['latency_ms']['p50']:.1f} / {r['latency_ms']['p99']:.1f}",
                     f"{batch['events_per_s']:,.0f}" if batch else "-",
                     f"{paced['latency_ms']['p99']:.1f}" if paced and paced.get('latency_ms') else "-",
                     f"{v['clients_ok']}/{v['clients']}", f"{100 * total:.0f}%", cpu))
head = ("scenario", "NATS", "events/s", "÷ single", "latency p50 / p99 ms",
        "JetStream batched publish events/s", "JetStream stored → republished p99 ms", "clients exact", "CPU total", "CPU by process (% of one core)")
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for row in rows:
    print("| " + " | ".join(row) + " |")
PY
echo "bench-cluster: reports in $OUT" >&2
