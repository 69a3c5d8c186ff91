#!/usr/bin/env bash
# Failover: steady load (SESSIONS × RATE tokens/s for DURATION, default
# 200 × 50/s for 20 s) over two edges, clients spread over both; after
# KILL_AFTER the load tool kills edge-1 (SIGKILL), so its clients — half of
# them, 100 by default — reconnect to edge-0 at the same moment with their
# last seq. Reports loss/duplicates against the log and reconnect → first
# resumed event. Extra arguments go to `weir-bench failover`.
source "$(dirname "$0")/bench-lib.sh"
SESSIONS=${SESSIONS:-200} RATE=${RATE:-50} DURATION=${DURATION:-20s} KILL_AFTER=${KILL_AFTER:-8s}
start_two_edge_stack "$SESSIONS"
bench failover --edge "${EDGE_URLS[0]}" --edge "${EDGE_URLS[1]}" \
  --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" \
  --kill-pid "$EDGE1_PID" --kill-after "$KILL_AFTER" --timeout 60s \
  --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge-0=$EDGE0_PID" --watch "producer=$PRODUCER_PID" \
  "$@"
