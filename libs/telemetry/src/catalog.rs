//! Every metric weir exports in one table, [`METRICS`]: each one's kind,
//! buckets, unit, help text and whether a process exports it at 0 from its
//! start. Describing, zeroing, the exporter's buckets and the tests of the
//! dashboards all read the table; the names are [`crate::names`]'s.

use metrics::Unit;

use crate::names::*;

/// What a metric is, and a histogram's buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram(&'static [f64]),
}

/// Which processes export a label-less series at 0 from their start, so
/// that `rate()` and `increase()` see its first increment and dashboards
/// show 0, not "no data".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zeroed {
    No,
    Edge,
    Producer,
    Both,
}

/// A process that exports metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Edge,
    Producer,
}

/// One metric: its name, kind, unit, help text and zeroing.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
    pub zeroed: Zeroed,
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

/// Every metric weir exports.
pub const METRICS: &[Metric] = &[
    Metric {
        name: CONNECTIONS_OPEN,
        kind: Kind::Gauge,
        unit: None,
        help: "WebSocket and SSE connections open now",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: CONNECTIONS_ACCEPTED,
        kind: Kind::Counter,
        unit: None,
        help: "Connections accepted, by transport",
        zeroed: Zeroed::No,
    },
    Metric {
        name: CONNECTIONS_REJECTED,
        kind: Kind::Counter,
        unit: None,
        help: "Connections refused at the node's limit",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: SESSIONS_SUBSCRIBED,
        kind: Kind::Gauge,
        unit: None,
        help: "Sessions with an upstream subscription on this node",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: FEEDS_STARTED,
        kind: Kind::Counter,
        unit: None,
        help: "Upstream subscriptions (feeds) started: one per session while it has readers on this node",
        zeroed: Zeroed::No,
    },
    Metric {
        name: EVENTS_DELIVERED,
        kind: Kind::Counter,
        unit: None,
        help: "Events written to client sockets",
        zeroed: Zeroed::No,
    },
    Metric {
        name: FRAMES_SENT,
        kind: Kind::Counter,
        unit: None,
        help: "Event frames written to client sockets",
        zeroed: Zeroed::No,
    },
    Metric {
        name: EVENTS_PER_FRAME,
        kind: Kind::Histogram(COUNT_BUCKETS),
        unit: None,
        help: "Events coalesced into one frame",
        zeroed: Zeroed::No,
    },
    Metric {
        name: BYTES_SENT,
        kind: Kind::Counter,
        unit: Some(Unit::Bytes),
        help: "Bytes of event frames written",
        zeroed: Zeroed::No,
    },
    Metric {
        name: DELIVERY_LATENCY,
        kind: Kind::Histogram(LATENCY_BUCKETS),
        unit: Some(Unit::Seconds),
        help: "Event ts to written to the socket",
        zeroed: Zeroed::No,
    },
    Metric {
        name: BUFFER_FILL,
        kind: Kind::Histogram(RATIO_BUCKETS),
        unit: None,
        help: "Per-connection buffer fill when a frame is sent",
        zeroed: Zeroed::No,
    },
    Metric {
        name: BACKPRESSURE_PAUSES,
        kind: Kind::Counter,
        unit: None,
        help: "Times a connection hit its high watermark",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: LOG_READS,
        kind: Kind::Counter,
        unit: None,
        help: "Pages read from the log for clients behind the live feed",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: LOG_CACHE_BYTES,
        kind: Kind::Gauge,
        unit: None,
        help: "Bytes of log pages cached for the sessions followed on this node",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: LOG_CACHE_EVICTIONS,
        kind: Kind::Counter,
        unit: None,
        help: "Log pages dropped from a session's cache to keep it within WEIR_LOG_CACHE",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: FRAME_CACHE_BYTES,
        kind: Kind::Gauge,
        unit: None,
        help: "Bytes of encoded frames shared by the subscribers of the sessions followed on this node",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: FRAMES_BUILT,
        kind: Kind::Counter,
        unit: None,
        help: "Frames encoded for WebSocket and SSE subscribers (the others at that range share them)",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: FRAME_CACHE_HITS,
        kind: Kind::Counter,
        unit: None,
        help: "Frames a subscriber took from its session's shared frames instead of encoding them",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: RESUMES,
        kind: Kind::Counter,
        unit: None,
        help: "Connections that resumed with after > 0, by outcome",
        zeroed: Zeroed::No,
    },
    Metric {
        name: CLOSES,
        kind: Kind::Counter,
        unit: None,
        help: "WebSocket closes sent, by code",
        zeroed: Zeroed::No,
    },
    Metric {
        name: SLOW_CONSUMERS,
        kind: Kind::Counter,
        unit: None,
        help: "Connections closed with 4008",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: AUTH_FAILURES,
        kind: Kind::Counter,
        unit: None,
        help: "Requests refused for a bad token or API key",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: JWKS_UP,
        kind: Kind::Gauge,
        unit: None,
        help: "1 while the identity provider's JWK set answers, 0 while it fails",
        zeroed: Zeroed::No,
    },
    Metric {
        name: JWKS_KEYS,
        kind: Kind::Gauge,
        unit: None,
        help: "Usable keys in the cached JWK set",
        zeroed: Zeroed::No,
    },
    Metric {
        name: JWKS_FETCHES,
        kind: Kind::Counter,
        unit: None,
        help: "Fetches of the JWK set, by result",
        zeroed: Zeroed::No,
    },
    Metric {
        name: JWKS_REFRESHES_LIMITED,
        kind: Kind::Counter,
        unit: None,
        help: "Unknown-kid tokens that did not fetch the JWK set (rate limit)",
        zeroed: Zeroed::No,
    },
    Metric {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        unit: None,
        help: "HTTP API requests, by route and status",
        zeroed: Zeroed::No,
    },
    Metric {
        name: SESSIONS_CREATED,
        kind: Kind::Counter,
        unit: None,
        help: "Sessions created through the API",
        zeroed: Zeroed::No,
    },
    Metric {
        name: UPSTREAM_GAPS,
        kind: Kind::Counter,
        unit: None,
        help: "Seq gaps on a live feed, filled from the log",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: NOTICES_SENT,
        kind: Kind::Counter,
        unit: None,
        help: "Operator notices broadcast through this edge (POST /v1/broadcast)",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: SESSIONS_RATE_LIMITED,
        kind: Kind::Counter,
        unit: None,
        help: "Session creations refused with 429, by the limit hit (api_key, address)",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: HEADER_TIMEOUTS,
        kind: Kind::Counter,
        unit: None,
        help: "Connections closed because a request's headers did not arrive within --header-timeout",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: WRITE_STALLS,
        kind: Kind::Counter,
        unit: None,
        help: "Connections cut because the client took no bytes for the write timeout (SSE and other responses)",
        zeroed: Zeroed::Edge,
    },
    Metric {
        name: EDGE_TASKS,
        kind: Kind::Gauge,
        unit: None,
        help: "Tokio tasks alive in the edge's process",
        zeroed: Zeroed::No,
    },
    Metric {
        name: RUNS,
        kind: Kind::Counter,
        unit: None,
        help: "Runs finished, by outcome",
        zeroed: Zeroed::No,
    },
    Metric {
        name: RUNS_ACTIVE,
        kind: Kind::Gauge,
        unit: None,
        help: "Runs in progress on this producer",
        zeroed: Zeroed::Producer,
    },
    Metric {
        name: EVENTS_PUBLISHED,
        kind: Kind::Counter,
        unit: None,
        help: "Events appended to the log",
        zeroed: Zeroed::Producer,
    },
    Metric {
        name: PUBLISH_LATENCY,
        kind: Kind::Histogram(LATENCY_BUCKETS),
        unit: Some(Unit::Seconds),
        help: "JetStream publish to ack",
        zeroed: Zeroed::No,
    },
    Metric {
        name: EVENTS_PER_PUBLISH,
        kind: Kind::Histogram(COUNT_BUCKETS),
        unit: None,
        help: "Events per bus message",
        zeroed: Zeroed::No,
    },
    Metric {
        name: TIME_TO_FIRST_TOKEN,
        kind: Kind::Histogram(FIRST_TOKEN_BUCKETS),
        unit: Some(Unit::Seconds),
        help: "Run start to first event",
        zeroed: Zeroed::No,
    },
    Metric {
        name: LEASE_LOSSES,
        kind: Kind::Counter,
        unit: None,
        help: "Runs stopped because their lease was lost",
        zeroed: Zeroed::Producer,
    },
    Metric {
        name: RUNS_REAPED,
        kind: Kind::Counter,
        unit: None,
        help: "Runs of dead producers ended as failed",
        zeroed: Zeroed::Producer,
    },
    Metric {
        name: PUBLISH_RETRIES,
        kind: Kind::Counter,
        unit: None,
        help: "Publishes retried after a bus error",
        zeroed: Zeroed::Producer,
    },
    Metric {
        name: PRODUCER_TASKS,
        kind: Kind::Gauge,
        unit: None,
        help: "Tokio tasks alive in the producer's process",
        zeroed: Zeroed::No,
    },
    Metric {
        name: BUS_ERRORS,
        kind: Kind::Counter,
        unit: None,
        help: "Bus operations that failed",
        zeroed: Zeroed::No,
    },
    Metric {
        name: BUS_DISCONNECTS,
        kind: Kind::Counter,
        unit: None,
        help: "Disconnections from NATS",
        zeroed: Zeroed::Both,
    },
    Metric {
        name: STORE_ERRORS,
        kind: Kind::Counter,
        unit: None,
        help: "Store operations that failed",
        zeroed: Zeroed::Both,
    },
    Metric {
        name: BUS_RECONNECTS,
        kind: Kind::Counter,
        unit: None,
        help: "Connections to NATS re-established after a loss",
        zeroed: Zeroed::Both,
    },
    Metric {
        name: APPEND_RESENDS,
        kind: Kind::Counter,
        unit: None,
        help: "Appends sent again while unanswered (their stream electing a leader)",
        zeroed: Zeroed::Both,
    },
    Metric {
        name: STORE_RECONNECTS,
        kind: Kind::Counter,
        unit: None,
        help: "Store reached again after an outage (one per outage)",
        zeroed: Zeroed::Both,
    },
    Metric {
        name: STORE_OUTAGES,
        kind: Kind::Counter,
        unit: None,
        help: "Times the store became unreachable (one per outage)",
        zeroed: Zeroed::Both,
    },
];

/// Exports `role`'s series at 0 (label-less counters and gauges).
pub fn zero(role: Role) {
    for m in METRICS {
        let mine = matches!(
            (m.zeroed, role),
            (Zeroed::Both, _) | (Zeroed::Edge, Role::Edge) | (Zeroed::Producer, Role::Producer)
        );
        match (mine, m.kind) {
            (true, Kind::Gauge) => metrics::gauge!(m.name).increment(0.0),
            (true, Kind::Counter) => metrics::counter!(m.name).increment(0),
            _ => {}
        }
    }
}

/// Histograms and their buckets.
pub fn histograms() -> impl Iterator<Item = (&'static str, &'static [f64])> {
    METRICS.iter().filter_map(|m| match m.kind {
        Kind::Histogram(buckets) => Some((m.name, buckets)),
        _ => None,
    })
}

/// Registers help texts (and units).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for m in METRICS {
        match (m.kind, m.unit) {
            (Kind::Counter, Some(u)) => describe_counter!(m.name, u, m.help),
            (Kind::Counter, None) => describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(u)) => describe_gauge!(m.name, u, m.help),
            (Kind::Gauge, None) => describe_gauge!(m.name, m.help),
            (Kind::Histogram(_), Some(u)) => describe_histogram!(m.name, u, m.help),
            (Kind::Histogram(_), None) => describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_in_the_table_once_and_named_for_its_kind() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a metric is in the table twice");
        for m in METRICS {
            assert!(m.name.starts_with("weir_"), "{}", m.name);
            assert_eq!(
                m.name.ends_with("_total"),
                m.kind == Kind::Counter,
                "{}: a counter's name ends in _total, nothing else's does",
                m.name
            );
            assert!(!m.help.is_empty(), "{} has no help text", m.name);
            if let Kind::Histogram(b) = m.kind {
                assert!(b.windows(2).all(|w| w[0] < w[1]), "{}: buckets", m.name);
            }
        }
    }
}
