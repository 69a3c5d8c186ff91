//! What a run measures while it runs: live counters for the progress bar,
//! and latency histograms (HDR, microseconds) sharded so that many clients
//! can record without contending on one lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Each client's first this many events are measured apart from the rest
/// (`first_events` / `later_events`): a chat user sees them as the time to
/// first token.
pub const FIRST_EVENTS: u64 = 10;

/// Highest latency a histogram holds: one hour, in µs.
const MAX_US: u64 = 3_600_000_000;
const SHARDS: usize = 16;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// A histogram many tasks record into; shard `i` is picked by the caller.
pub struct Sharded {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Default for Sharded {
    fn default() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }
}

impl Sharded {
    /// Records every value of `us` under one lock.
    pub fn record_all(&self, shard: usize, us: impl IntoIterator<Item = u64>) {
        let mut h = self.shards[shard % SHARDS].lock().expect("histogram lock");
        for v in us {
            h.saturating_record(v.clamp(1, MAX_US));
        }
    }

    pub fn record(&self, shard: usize, d: Duration) {
        self.record_all(shard, [d.as_micros() as u64]);
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.shards {
            all.add(&*s.lock().expect("histogram lock"))
                .expect("same bounds");
        }
        all
    }
}

/// Counters shared by every client of a run.
#[derive(Default)]
pub struct Live {
    pub events: AtomicU64,
    pub frames: AtomicU64,
    pub reconnects: AtomicU64,
    pub connected: AtomicU64,
    pub done: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Event latency from `ts` to receipt.
    pub latency: Sharded,
    /// The same, of each client's first [`FIRST_EVENTS`] events...
    pub first_events: Sharded,
    /// ...and of every later one.
    pub later_events: Sharded,
    /// Time from session creation (or release) to a client's first event.
    pub first_event: Sharded,
    /// Where a start's time goes, from the session's create request: until
    /// the create answered, until the client's first hello, and until the
    /// producer stamped the session's first event (its `ts`).
    pub create: Sharded,
    pub hello: Sharded,
    pub first_ts: Sharded,
    /// Time from a broken connection to the first event on the next one.
    pub resume: Sharded,
    /// First and last event receipt, µs since `origin`.
    first_rx: AtomicU64,
    last_rx: AtomicU64,
    origin: Option<Instant>,
}

impl Live {
    pub fn new() -> Live {
        Live {
            first_rx: AtomicU64::new(u64::MAX),
            origin: Some(Instant::now()),
            ..Live::default()
        }
    }

    fn since_origin(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin.expect("set by new"))
            .as_micros() as u64
    }

    /// Notes that events arrived at `at`.
    pub fn received(&self, at: Instant, events: u64) {
        let t = self.since_origin(at);
        self.first_rx.fetch_min(t, Ordering::Relaxed);
        self.last_rx.fetch_max(t, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// From the first event received to the last, anywhere.
    pub fn delivery_window(&self) -> Duration {
        let (a, b) = (
            self.first_rx.load(Ordering::Relaxed),
            self.last_rx.load(Ordering::Relaxed),
        );
        if a == u64::MAX || b <= a {
            return Duration::ZERO;
        }
        Duration::from_micros(b - a)
    }

    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Percentiles of a histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// (percentile, ms) points of the latency distribution, for the plot.
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(1)
        .map(|v| {
            (
                v.quantile_iterated_to(),
                v.value_iterated_to() as f64 / 1000.0,
            )
        })
        .filter(|(q, _)| *q < 1.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_in_ms() {
        let s = Sharded::default();
        s.record_all(0, (1..=1000).map(|v| v * 1000));
        s.record_all(5, [2_000_000]);
        let p = Percentiles::of(&s.merged());
        assert_eq!(p.count, 1001);
        assert!((p.p50 - 500.0).abs() < 2.0, "{p:?}");
        assert!((p.max - 2000.0).abs() < 2.0, "{p:?}");
    }
}
