#!/usr/bin/env bash
# Steady load: SESSIONS sessions × RATE tokens/s for DURATION, one WebSocket
# client each, mock agent on one producer, one edge; then NATS's raw limits
# in the same run. Extra arguments go to `weir-bench steady`.
#   scripts/bench-steady.sh                      # 200 × 50/s, 30 s
#   SESSIONS=1000 scripts/bench-steady.sh        # 1,000 × 50/s
source "$(dirname "$0")/bench-lib.sh"
SESSIONS=${SESSIONS:-200} RATE=${RATE:-50} DURATION=${DURATION:-30s}
start_nats
start_redis
start_edge edge-0 --max-connections 20000
start_producer producer-0 --concurrency $((SESSIONS + 64))
bench steady --edge "$EDGE_URL" --sessions "$SESSIONS" --rate "$RATE" --duration "$DURATION" \
  --nats-url "$NATS_URL" --with-limit --timeout 90s \
  --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" --watch "producer=$PRODUCER_PID" \
  "$@"
