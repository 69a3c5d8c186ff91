#!/usr/bin/env bash
# Burst: SESSIONS sessions (default 200) × RATE tokens/s (50) for DURATION
# (10 s), all created at once over two edges, each client connecting (to the
# edge that created its session) as soon as its own create returns; one
# producer. Runs the burst, then `weir-bench limit` against the same NATS,
# then the burst again, and prints each. Reports each client's first 10
# events' latency apart from the rest, time to first event from the create
# request, and the CPU of every process. Then a burst of starts alone (one
# token a session, seqs checked): the CPU each process spends on a start.
# Extra arguments go to every burst.
#   scripts/bench-burst.sh
#   OUT=/tmp/burst scripts/bench-burst.sh         # also keep the JSON reports there
#   BENCH_WEIR=/tmp/weir-before scripts/bench-burst.sh   # serve with another build
#                                                 # (the load tool stays this one)
#   BENCH_NATS_MONITOR=1 scripts/bench-burst.sh   # also count what each burst asked of
#                                                 # NATS (its monitoring endpoint)
source "$(dirname "$0")/bench-lib.sh"
SESSIONS=${SESSIONS:-200} RATE=${RATE:-50} DURATION=${DURATION:-10s}
OUT=${OUT:-$BENCH_DIR}
mkdir -p "$OUT"
start_two_edge_stack "$SESSIONS"
# What NATS did during a burst, from its monitoring endpoint: messages in
# and out, JetStream API requests (consumer creations among them) and the
# consumers left.
nats_counts() {
  [ -n "${NATS_MONITOR_PORT:-}" ] || return 0
  python3 - "http://127.0.0.1:$NATS_MONITOR_PORT" "$1" <<'PY'
import json, sys, urllib.request
base, path = sys.argv[1], sys.argv[2]
get = lambda p: json.load(urllib.request.urlopen(base + p))
v, j = get("/varz"), get("/jsz")
now = {"in_msgs": v["in_msgs"], "out_msgs": v["out_msgs"], "js_api_requests": j["api"]["total"],
       "consumers": j.get("consumers", 0)}
try:
    before = json.load(open(path))
    print("nats during the burst: " + ", ".join(
        f"{k} {now[k] - before[k] if k != 'consumers' else now[k]}" for k in now))
except FileNotFoundError:
    pass
json.dump(now, open(path, "w"))
PY
}
burst() { # round [extra flags...]
  local round=$1; shift
  nats_counts "$OUT/nats-$round.json"
  bench burst --edge "${EDGE_URLS[0]}" --edge "${EDGE_URLS[1]}" \
    --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" --timeout 90s --quiet \
    --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge-0=$EDGE0_PID" \
    --watch "edge-1=$EDGE1_PID" --watch "producer=$PRODUCER_PID" \
    --out "$OUT/burst-$round.json" "$@" "${EXTRA[@]}"
  nats_counts "$OUT/nats-$round.json"
}
EXTRA=("$@")
burst 1
bench limit --nats-url "$NATS_URL" --watch "nats=$NATS_PID" --json >"$OUT/limit.json"
python3 - "$OUT/limit.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    l = r.get("latency_ms") or {}
    lat = f" · p50 {l['p50']:.2f} · p99 {l['p99']:.2f} ms" if l else ""
    cpu = "".join(f" · {c['name']} {c['us']:.1f} µs/event" for c in r.get("cpu_us_per_event", []))
    print(f"limit: {r['what']}: {r['events_per_s']:.0f} events/s{lat}{cpu}")
PY
burst 2
# What a start costs: the same burst with one token a session, CPU
# milliseconds a session per process (the JSON's cpu_seconds / sessions).
burst starts --tokens 1 --verify seq
