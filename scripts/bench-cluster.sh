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
