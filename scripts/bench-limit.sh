#!/usr/bin/env bash
# NATS's raw limits on this machine for weir's event size: core pub→sub at
# full speed and paced, JetStream publish one event per message and batched,
# and paced over 200 subjects with the latency of the stream's republish. Extra
# arguments go to `weir-bench limit`. Each row gives the CPU time per event of
# nats-server and of the tool (the thinnest publisher and subscriber).
source "$(dirname "$0")/bench-lib.sh"
start_nats
bench limit --nats-url "$NATS_URL" --watch "nats=$NATS_PID" "$@"
