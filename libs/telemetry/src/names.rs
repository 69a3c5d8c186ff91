//! The name of every metric weir exports: the constants call sites use.
//! Dashboards and alert rules use these names. What each one is — its kind,
//! buckets, unit, help text and zeroing — is in [`crate::catalog`]'s table,
//! re-exported here so that a process zeroes and describes its metrics
//! through the same module it names them with.

pub use crate::catalog::{describe, histograms, zero, Kind, Metric, Role, Zeroed, METRICS};

// Edge: connections and delivery.
pub const CONNECTIONS_OPEN: &str = "weir_edge_connections_open";
pub const CONNECTIONS_ACCEPTED: &str = "weir_edge_connections_accepted_total";
pub const CONNECTIONS_REJECTED: &str = "weir_edge_connections_rejected_total";
pub const SESSIONS_SUBSCRIBED: &str = "weir_edge_sessions_subscribed";
pub const FEEDS_STARTED: &str = "weir_edge_feeds_started_total";
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
/// Copies of an append sent again while it had no answer (its stream
/// electing a leader).
pub const APPEND_RESENDS: &str = "weir_bus_append_resends_total";
pub const STORE_RECONNECTS: &str = "weir_store_reconnects_total";
pub const STORE_OUTAGES: &str = "weir_store_outages_total";
