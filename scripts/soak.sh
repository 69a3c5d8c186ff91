#!/usr/bin/env bash
# Soak (on demand, not in CI): nats-server (pinned, with monitoring), Redis,
# two edges and two producers from the release build; `weir-bench soak`
# keeps SOAK_SESSIONS sessions streaming at once for SOAK_SECONDS (default
# 600), each one replaced when it ends, every 10th cancelled halfway, every
# client dropping its connection every 60 events and resuming on the other
# edge. Every 5 s it samples the RSS and open fds (/proc) of the edges and
# producers (and of nats-server, plotted, not judged: its stream keeps an
# hour of events), the edges' and producers' tokio tasks
# (weir_edge_tasks / weir_producer_tasks on /metrics) and their NATS
# subscriptions (/connz). It writes soak.csv, soak.json and soak.svg to
# SOAK_OUT (default target/soak/) and fails when a session was not read
# exactly or a series grew after warm-up (last third against middle third).
#   scripts/soak.sh                       # 10 minutes
#   SOAK_SECONDS=60 scripts/soak.sh       # a quick look
#   scripts/soak.sh --sessions 100        # extra flags go to `weir-bench soak`
source "$(dirname "$0")/bench-lib.sh"
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_SESSIONS=${SOAK_SESSIONS:-40}
SOAK_OUT=${SOAK_OUT:-$ROOT/target/soak}
mkdir -p "$SOAK_OUT"

BENCH_NATS_MONITOR=1 start_nats
start_redis
watch=(--context "nats=$NATS_PID")
for i in 0 1; do
  start_edge "edge-$i" --create-rate 0
  watch+=(--watch "edge-$i=$EDGE_PID" --metrics "edge-$i=$EDGE_URL/metrics")
  start_producer "producer-$i" --concurrency $((SOAK_SESSIONS + 16))
  watch+=(--watch "producer-$i=$PRODUCER_PID" --metrics "producer-$i=$PRODUCER_URL/metrics")
done
echo "soak: ${SOAK_SECONDS}s, $SOAK_SESSIONS sessions at once over ${EDGE_URLS[*]}; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
bench soak --edge "$(IFS=,; echo "${EDGE_URLS[*]}")" --sessions "$SOAK_SESSIONS" --duration "${SOAK_SECONDS}s" \
  "${watch[@]}" --nats-monitor "http://127.0.0.1:$NATS_MONITOR_PORT" \
  --csv "$SOAK_OUT/soak.csv" --out "$SOAK_OUT/soak.json" --plot "$SOAK_OUT/soak.svg" --quiet "$@"
echo "soak: $SOAK_OUT/soak.{csv,json,svg}; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
