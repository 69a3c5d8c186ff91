//! What reached clients, counted the same for every transport.

use weir_telemetry::names;

/// Events written to clients by this process (the edge's load as
/// `/v1/nodes` shows it).
pub static DELIVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A transport's delivery counters, looked up once per connection.
pub struct DeliveryMetrics {
    latency: metrics::Histogram,
    events: metrics::Counter,
    frames: metrics::Counter,
    events_per_frame: metrics::Histogram,
    bytes: metrics::Counter,
}

impl DeliveryMetrics {
    pub fn new(transport: &'static str) -> DeliveryMetrics {
        DeliveryMetrics {
            latency: metrics::histogram!(names::DELIVERY_LATENCY),
            events: metrics::counter!(names::EVENTS_DELIVERED, "transport" => transport),
            frames: metrics::counter!(names::FRAMES_SENT, "transport" => transport),
            events_per_frame: metrics::histogram!(names::EVENTS_PER_FRAME),
            bytes: metrics::counter!(names::BYTES_SENT, "transport" => transport),
        }
    }

    /// Counts a frame of events written to the client (`ts`: each event's `ts`).
    pub fn record(&self, ts: &[f64], bytes: usize) {
        DELIVERED.fetch_add(ts.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let now = weir_protocol::now_ms();
        for t in ts {
            self.latency.record(((now - t) / 1000.0).max(0.0));
        }
        self.events.increment(ts.len() as u64);
        self.frames.increment(1);
        self.events_per_frame.record(ts.len() as f64);
        self.bytes.increment(bytes as u64);
    }
}
