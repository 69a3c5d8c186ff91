#!/usr/bin/env bash
# Saturation: SESSIONS sessions (default 20) producing TOKENS tokens each as
# fast as they can (mock agent, rate 0), one WebSocket client each, one edge,
# one producer; then NATS's raw limits in the same run. Extra arguments go to
# `weir-bench saturation` (e.g. --external to publish from the load tool).
source "$(dirname "$0")/bench-lib.sh"
SESSIONS=${SESSIONS:-20} TOKENS=${TOKENS:-50000}
start_nats
start_redis
start_edge edge-0
start_producer producer-0 --concurrency $((SESSIONS + 16))
bench saturation --edge "$EDGE_URL" --sessions "$SESSIONS" --tokens "$TOKENS" \
  --nats-url "$NATS_URL" --with-limit --timeout 60s \
  --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" --watch "producer=$PRODUCER_PID" \
  "$@"
