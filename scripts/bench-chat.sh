#!/usr/bin/env bash
# Chat: CHATS chats (default 200) sending at once over two edges, ROUNDS
# rounds (3): time from the user's request to the first token by weir's one
# request (`POST /v1/chat`), by create-then-connect (`POST /v1/sessions` +
# WebSocket), and by Vercel's resumable-stream behind a Node server
# (tools/bench/resumable/, on the same Redis), each path started all at
# once, the order rotating by round. Every reply is read to its end and
# checked. Extra arguments go to `weir-bench chat`.
#   scripts/bench-chat.sh
#   OUT=/tmp/chat scripts/bench-chat.sh    # also keep the JSON report there
#   BASELINE=0 scripts/bench-chat.sh       # weir's two paths only
source "$(dirname "$0")/bench-lib.sh"
CHATS=${CHATS:-200} ROUNDS=${ROUNDS:-3} RATE=${RATE:-50}
OUT=${OUT:-$BENCH_DIR}
mkdir -p "$OUT"
start_two_edge_stack "$CHATS"
baseline=()
if [ "${BASELINE:-1}" = 1 ]; then
  (cd tools/bench/resumable && [ -d node_modules ] || npm ci --no-audit --no-fund --silent)
  BASELINE_PORT=$(free_port)
  REDIS_URL=$REDIS_URL PORT=$BASELINE_PORT node tools/bench/resumable/server.mjs \
    >"$BENCH_DIR/baseline.log" 2>&1 &
  PIDS+=("$!")
  wait_port "$BASELINE_PORT" "resumable-stream baseline"
  baseline=(--baseline "http://127.0.0.1:$BASELINE_PORT")
fi
bench chat --edge "${EDGE_URLS[0]}" --edge "${EDGE_URLS[1]}" \
  --chats "$CHATS" --rounds "$ROUNDS" --rate "$RATE" "${baseline[@]}" \
  --out "$OUT/chat.json" "$@"
