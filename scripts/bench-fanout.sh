#!/usr/bin/env bash
# Fan-out: one session, SUBSCRIBERS WebSocket clients (default 2,000) on one
# edge, all subscribed before the session produces (it is created paused and
# resumed once every client has its hello); TOKENS tokens at RATE (default
# as fast as possible). Then NATS's raw limits in the same run. Extra
# arguments go to `weir-bench fanout`: `--join-over 10s` has the clients join
# one after another over 10 s instead (each reads the session from its start),
# e.g. `RATE=50 TOKENS=1000 scripts/bench-fanout.sh --external --join-over 10s`.
# EDGE_ARGS are extra flags for the edge (e.g. "--frame-cache 0"). The report
# has the edge's RSS idle, at its peak and per subscriber (edge_rss_*).
source "$(dirname "$0")/bench-lib.sh"
SUBSCRIBERS=${SUBSCRIBERS:-2000} TOKENS=${TOKENS:-5000} RATE=${RATE:-0}
start_nats
start_redis
# shellcheck disable=SC2086 # EDGE_ARGS is a list of flags
start_edge edge-0 --max-connections 20000 ${EDGE_ARGS:-}
start_producer producer-0
bench fanout --timeout "${TIMEOUT:-60s}" --edge "$EDGE_URL" --subscribers "$SUBSCRIBERS" --tokens "$TOKENS" --rate "$RATE" \
  --nats-url "$NATS_URL" --with-limit --create-concurrency 256 \
  --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" --watch "producer=$PRODUCER_PID" \
  "$@"
