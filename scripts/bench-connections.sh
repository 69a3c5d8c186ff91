#!/usr/bin/env bash
# Connections: CONNECTIONS idle subscribed WebSocket connections (default
# 10,000) on one edge, each on its own outside-producer session that
# publishes nothing; reports the edge's RSS per connection. Extra arguments
# go to `weir-bench connections` (e.g. --sessions 100 to share sessions).
source "$(dirname "$0")/bench-lib.sh"
CONNECTIONS=${CONNECTIONS:-10000}
start_nats
start_redis
# Its sessions never get a producer: they must not end `unclaimed` while measured.
start_edge edge-0 --max-connections $((CONNECTIONS + 1000)) --claim-timeout 1h
bench connections --edge "$EDGE_URL" --edge-pid "$EDGE_PID" --connections "$CONNECTIONS" --timeout 60s \
  --watch "nats=$NATS_PID" --watch "redis=$REDIS_PID" --watch "edge=$EDGE_PID" \
  "$@"
