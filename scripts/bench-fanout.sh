#!/usr/bin/env bash
# Fan-out: one session, SUBSCRIBERS WebSocket clients (default 2,000) on one
# edge, all subscribed before the session produces (it is created paused and
# resumed once every client has its hello); TOKENS tokens at RATE (default
# as fast as possible). Then NATS's raw limits in the same run. Extra
# arguments go to `weir bench fanout`.
source "$(dirname "$0")/bench-lib.sh"
SUBSCRIBERS=${SUBSCRIBERS:-2000} TOKENS=${TOKENS:-5000} RATE=${RATE:-0}
start_nats
start_redis
start_edge edge-0 --max-connections 20000
start_producer producer-0
bench fanout --timeout "${TIMEOUT:-60s}" --edge "$EDGE_URL" --subscribers "$SUBSCRIBERS" --tokens "$TOKENS" --rate "$RATE" \
  --nats-url "$NATS_URL" --with-limit --create-concurrency 256 \
  --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" --watch "producer=$PRODUCER_PID" \
  "$@"
