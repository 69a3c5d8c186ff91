#!/usr/bin/env bash
# What docs/sizing.md needs beyond `weir-bench`'s own report: steady load
# (SESSIONS sessions × RATE tokens/s for DURATION, one WebSocket client each,
# one edge, one producer), and around it Redis's cost per live session
# (commands/s, CPU, memory) and JetStream's bytes per event.
#   scripts/bench-sizing.sh                                  # 200 × 50/s, 20 s
#   SESSIONS=1000 RATE=20 DURATION=30s scripts/bench-sizing.sh
# Redis's and nats-server's numbers do not depend on weir's build; the CPU
# of the edge and the producer does (use the release build for those).
export BENCH_NATS_MONITOR=1
source "$(dirname "$0")/bench-lib.sh"
SESSIONS=${SESSIONS:-200} RATE=${RATE:-50} DURATION=${DURATION:-20s}
start_nats
start_redis
start_edge edge-0 --max-connections 20000
start_producer producer-0 --concurrency $((SESSIONS + 64))

redis_info() { redis-cli -p "$REDIS_PORT" info "$1" | tr -d '\r'; }
redis_calls() { redis_info commandstats | sed -n 's/^cmdstat_[^:]*:calls=\([0-9]*\),.*/\1/p' | awk '{s += $1} END {print s}'; }
redis_cpu() { redis_info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }
redis_mem() { redis_info memory | sed -n 's/^used_memory:\([0-9]*\)/\1/p'; }
js() { curl -s "http://127.0.0.1:$NATS_MONITOR_PORT/jsz" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['$1'])"; }

calls0=$(redis_calls) cpu0=$(redis_cpu) mem0=$(redis_mem) bytes0=$(js bytes) msgs0=$(js messages)
start=$(date +%s.%N)
bench steady --edge "$EDGE_URL" --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" \
  --nats-url "$NATS_URL" --timeout 90s \
  --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" --watch "producer=$PRODUCER_PID" \
  "$@"
end=$(date +%s.%N)
calls1=$(redis_calls) cpu1=$(redis_cpu) mem1=$(redis_mem) bytes1=$(js bytes) msgs1=$(js messages)
python3 - "$SESSIONS" "$start" "$end" "$calls0" "$calls1" "$cpu0" "$cpu1" "$mem0" "$mem1" \
  "$bytes0" "$bytes1" "$msgs0" "$msgs1" <<'PY'
import sys
n, t0, t1, c0, c1, u0, u1, m0, m1, b0, b1, g0, g1 = map(float, sys.argv[1:])
secs = t1 - t0
print(f"sizing: {n:.0f} sessions over {secs:.1f} s (create to last end)")
print(f"sizing: redis {(c1 - c0) / n / secs:.2f} commands/s and "
      f"{(u1 - u0) / n / secs * 1e6:.1f} µs CPU/s per live session; "
      f"{(c1 - c0) / n:.0f} commands and {(m1 - m0) / n / 1024:.2f} KiB kept per session")
print(f"sizing: jetstream {g1 - g0:.0f} messages, {(b1 - b0) / 2**20:.1f} MiB, "
      f"{(b1 - b0) / max(1, g1 - g0):.0f} B stored per message (events per message: the report's events / messages)")
PY
