//! Every metric weir exports. Dashboards and alert rules use these names.

// Edge: connections and delivery.
pub const CONNECTIONS_OPEN: &str = "weir_edge_connections_open";
pub const CONNECTIONS_ACCEPTED: &str = "weir_edge_connections_accepted_total";
pub const CONNECTIONS_REJECTED: &str = "weir_edge_connections_rejected_total";
pub const SESSIONS_SUBSCRIBED: &str = "weir_edge_sessions_subscribed";
pub const EVENTS_DELIVERED: &str = "weir_edge_events_delivered_total";
pub const FRAMES_SENT: &str = "weir_edge_frames_sent_total";
pub const EVENTS_PER_FRAME: &str = "weir_edge_events_per_frame";
pub const BYTES_SENT: &str = "weir_edge_bytes_sent_total";
pub const DELIVERY_LATENCY: &str = "weir_edge_delivery_latency_seconds";
pub const BUFFER_FILL: &str = "weir_edge_buffer_fill_ratio";
pub const BACKPRESSURE_PAUSES: &str = "weir_edge_backpressure_pauses_total";
pub const LOG_READS: &str = "weir_edge_log_reads_total";
pub const LOG_CACHE_BYTES: &str = "weir_edge_log_cache_bytes";
pub const LOG_CACHE_EVICTIONS: &str = "weir_edge_log_cache_evictions_total";
pub const FRAME_CACHE_BYTES: &str = "weir_edge_frame_cache_bytes";
pub const FRAMES_BUILT: &str = "weir_edge_frames_built_total";
pub const FRAME_CACHE_HITS: &str = "weir_edge_frame_cache_hits_total";
pub const RESUMES: &str = "weir_edge_resumes_total";
pub const CLOSES: &str = "weir_edge_closes_total";
pub const SLOW_CONSUMERS: &str = "weir_edge_slow_consumer_disconnects_total";
pub const AUTH_FAILURES: &str = "weir_edge_auth_failures_total";
pub const HTTP_REQUESTS: &str = "weir_edge_http_requests_total";
pub const SESSIONS_CREATED: &str = "weir_edge_sessions_created_total";
pub const UPSTREAM_GAPS: &str = "weir_edge_upstream_gaps_total";
pub const NOTICES_SENT: &str = "weir_edge_notices_broadcast_total";
pub const SESSIONS_RATE_LIMITED: &str = "weir_edge_sessions_rate_limited_total";
pub const HEADER_TIMEOUTS: &str = "weir_edge_header_timeouts_total";
pub const WRITE_STALLS: &str = "weir_edge_write_stalls_total";
/// 1 while the identity provider's JWK set answers, 0 while it fails
/// (only on edges with `--jwks-url`).
pub const JWKS_UP: &str = "weir_edge_jwks_up";
/// Usable keys in the cached JWK set.
pub const JWKS_KEYS: &str = "weir_edge_jwks_keys";
/// Fetches of the JWK set, by `result` (`ok`, `error`).
pub const JWKS_FETCHES: &str = "weir_edge_jwks_fetches_total";
/// Tokens naming an unknown `kid` that did not fetch the set: one was
/// fetched less than `--jwks-min-refresh` ago.
pub const JWKS_REFRESHES_LIMITED: &str = "weir_edge_jwks_refreshes_limited_total";
/// Tokio tasks alive in the edge's process, read at each scrape (a leak shows as growth).
pub const EDGE_TASKS: &str = "weir_edge_tasks";

// Producer.
pub const RUNS: &str = "weir_producer_runs_total";
pub const RUNS_ACTIVE: &str = "weir_producer_runs_active";
pub const EVENTS_PUBLISHED: &str = "weir_producer_events_published_total";
pub const PUBLISH_LATENCY: &str = "weir_producer_publish_latency_seconds";
pub const EVENTS_PER_PUBLISH: &str = "weir_producer_events_per_publish";
pub const TIME_TO_FIRST_TOKEN: &str = "weir_producer_time_to_first_token_seconds";
pub const LEASE_LOSSES: &str = "weir_producer_lease_losses_total";
pub const RUNS_REAPED: &str = "weir_producer_runs_reaped_total";
pub const PUBLISH_RETRIES: &str = "weir_producer_publish_retries_total";
/// Tokio tasks alive in the producer's process, read at each scrape.
pub const PRODUCER_TASKS: &str = "weir_producer_tasks";

// Both: the bus and the store.
pub const BUS_ERRORS: &str = "weir_bus_errors_total";
pub const BUS_DISCONNECTS: &str = "weir_bus_disconnects_total";
pub const STORE_ERRORS: &str = "weir_store_errors_total";
pub const BUS_RECONNECTS: &str = "weir_bus_reconnects_total";
pub const STORE_RECONNECTS: &str = "weir_store_reconnects_total";
pub const STORE_OUTAGES: &str = "weir_store_outages_total";

/// Series an edge exports from its start (at 0), so that `rate()` and
/// `increase()` see their first increment and dashboards show 0, not "no data".
pub const EDGE_SERIES: &[&str] = &[
    CONNECTIONS_OPEN,
    SESSIONS_SUBSCRIBED,
    CONNECTIONS_REJECTED,
    BACKPRESSURE_PAUSES,
    LOG_READS,
    LOG_CACHE_BYTES,
    LOG_CACHE_EVICTIONS,
    FRAME_CACHE_BYTES,
    FRAMES_BUILT,
    FRAME_CACHE_HITS,
    SLOW_CONSUMERS,
    AUTH_FAILURES,
    UPSTREAM_GAPS,
    NOTICES_SENT,
    SESSIONS_RATE_LIMITED,
    HEADER_TIMEOUTS,
    WRITE_STALLS,
    BUS_DISCONNECTS,
    BUS_RECONNECTS,
    STORE_ERRORS,
    STORE_RECONNECTS,
    STORE_OUTAGES,
];

/// The same for a producer.
pub const PRODUCER_SERIES: &[&str] = &[
    RUNS_ACTIVE,
    EVENTS_PUBLISHED,
    LEASE_LOSSES,
    RUNS_REAPED,
    PUBLISH_RETRIES,
    BUS_DISCONNECTS,
    BUS_RECONNECTS,
    STORE_ERRORS,
    STORE_RECONNECTS,
    STORE_OUTAGES,
];

const GAUGES: &[&str] = &[
    CONNECTIONS_OPEN,
    SESSIONS_SUBSCRIBED,
    LOG_CACHE_BYTES,
    FRAME_CACHE_BYTES,
    RUNS_ACTIVE,
    EDGE_TASKS,
    PRODUCER_TASKS,
];

/// Exports `series` at 0 (label-less counters and gauges).
pub fn zero(series: &[&'static str]) {
    for name in series {
        if GAUGES.contains(name) {
            metrics::gauge!(*name).increment(0.0);
        } else {
            metrics::counter!(*name).increment(0);
        }
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];
const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
const RATIO_BUCKETS: &[f64] = &[0.0, 0.1, 0.3, 0.5, 0.8, 0.9, 1.0];

/// Histograms and their buckets.
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (DELIVERY_LATENCY, LATENCY_BUCKETS),
    (PUBLISH_LATENCY, LATENCY_BUCKETS),
    (TIME_TO_FIRST_TOKEN, FIRST_TOKEN_BUCKETS),
    (EVENTS_PER_FRAME, COUNT_BUCKETS),
    (EVENTS_PER_PUBLISH, COUNT_BUCKETS),
    (BUFFER_FILL, RATIO_BUCKETS),
];

/// Registers help texts.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(CONNECTIONS_OPEN, "WebSocket and SSE connections open now");
    describe_gauge!(EDGE_TASKS, "Tokio tasks alive in the edge's process");
    describe_gauge!(
        PRODUCER_TASKS,
        "Tokio tasks alive in the producer's process"
    );
    describe_counter!(CONNECTIONS_ACCEPTED, "Connections accepted, by transport");
    describe_counter!(
        CONNECTIONS_REJECTED,
        "Connections refused at the node's limit"
    );
    describe_gauge!(
        SESSIONS_SUBSCRIBED,
        "Sessions with an upstream subscription on this node"
    );
    describe_counter!(EVENTS_DELIVERED, "Events written to client sockets");
    describe_counter!(FRAMES_SENT, "Event frames written to client sockets");
    describe_histogram!(EVENTS_PER_FRAME, "Events coalesced into one frame");
    describe_counter!(BYTES_SENT, Unit::Bytes, "Bytes of event frames written");
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Event ts to written to the socket"
    );
    describe_histogram!(
        BUFFER_FILL,
        "Per-connection buffer fill when a frame is sent"
    );
    describe_counter!(
        BACKPRESSURE_PAUSES,
        "Times a connection hit its high watermark"
    );
    describe_counter!(
        LOG_READS,
        "Pages read from the log for clients behind the live feed"
    );
    describe_gauge!(
        LOG_CACHE_BYTES,
        "Bytes of log pages cached for the sessions followed on this node"
    );
    describe_counter!(
        LOG_CACHE_EVICTIONS,
        "Log pages dropped from a session's cache to keep it within WEIR_LOG_CACHE"
    );
    describe_gauge!(
        FRAME_CACHE_BYTES,
        "Bytes of encoded frames shared by the subscribers of the sessions followed on this node"
    );
    describe_counter!(
        FRAMES_BUILT,
        "Frames encoded for WebSocket and SSE subscribers (the others at that range share them)"
    );
    describe_counter!(
        FRAME_CACHE_HITS,
        "Frames a subscriber took from its session's shared frames instead of encoding them"
    );
    describe_counter!(
        RESUMES,
        "Connections that resumed with after > 0, by outcome"
    );
    describe_counter!(CLOSES, "WebSocket closes sent, by code");
    describe_counter!(SLOW_CONSUMERS, "Connections closed with 4008");
    describe_counter!(AUTH_FAILURES, "Requests refused for a bad token or API key");
    describe_gauge!(
        JWKS_UP,
        "1 while the identity provider's JWK set answers, 0 while it fails"
    );
    describe_gauge!(JWKS_KEYS, "Usable keys in the cached JWK set");
    describe_counter!(JWKS_FETCHES, "Fetches of the JWK set, by result");
    describe_counter!(
        JWKS_REFRESHES_LIMITED,
        "Unknown-kid tokens that did not fetch the JWK set (rate limit)"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP API requests, by route and status");
    describe_counter!(SESSIONS_CREATED, "Sessions created through the API");
    describe_counter!(
        UPSTREAM_GAPS,
        "Seq gaps on a live feed, filled from the log"
    );
    describe_counter!(
        NOTICES_SENT,
        "Operator notices broadcast through this edge (POST /v1/broadcast)"
    );
    describe_counter!(
        SESSIONS_RATE_LIMITED,
        "Session creations refused with 429, by the limit hit (api_key, address)"
    );
    describe_counter!(
        HEADER_TIMEOUTS,
        "Connections closed because a request's headers did not arrive within --header-timeout"
    );
    describe_counter!(
        WRITE_STALLS,
        "Connections cut because the client took no bytes for the write timeout (SSE and other responses)"
    );
    describe_counter!(RUNS, "Runs finished, by outcome");
    describe_gauge!(RUNS_ACTIVE, "Runs in progress on this producer");
    describe_counter!(EVENTS_PUBLISHED, "Events appended to the log");
    describe_histogram!(PUBLISH_LATENCY, Unit::Seconds, "JetStream publish to ack");
    describe_histogram!(EVENTS_PER_PUBLISH, "Events per bus message");
    describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        Unit::Seconds,
        "Run start to first event"
    );
    describe_counter!(LEASE_LOSSES, "Runs stopped because their lease was lost");
    describe_counter!(RUNS_REAPED, "Runs of dead producers ended as failed");
    describe_counter!(PUBLISH_RETRIES, "Publishes retried after a bus error");
    describe_counter!(BUS_ERRORS, "Bus operations that failed");
    describe_counter!(BUS_DISCONNECTS, "Disconnections from NATS");
    describe_counter!(STORE_ERRORS, "Store operations that failed");
    describe_counter!(
        BUS_RECONNECTS,
        "Connections to NATS re-established after a loss"
    );
    describe_counter!(
        STORE_RECONNECTS,
        "Store reached again after an outage (one per outage)"
    );
    describe_counter!(
        STORE_OUTAGES,
        "Times the store became unreachable (one per outage)"
    );
}
