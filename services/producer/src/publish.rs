//! A run's publisher: gives the agent's outputs their seqs and appends them
//! to the session's log, fenced, retrying bus errors with the same message
//! so that a retry is stored once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use weir_bus::{BusError, Fence};
use weir_protocol::{EventParts, SessionId};
use weir_store::Update;
use weir_telemetry::names;

use crate::agents::Output;
use crate::progress::Progress;
use crate::record::Recorder;
use crate::run::{Outcome, PUBLISHED};
use crate::Ctx;

/// Gives outputs their seqs and appends them, fenced, retrying bus errors
/// with the same message so that a retry is stored once. The store is not
/// on this path: progress goes to the recorder, which never waits.
pub(crate) struct Publisher {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) id: SessionId,
    pub(crate) fence: Fence,
    pub(crate) next_seq: u64,
    pub(crate) ended: bool,
    pub(crate) recorder: Recorder,
    /// Whether publishes are being stored: the lease is kept only then.
    pub(crate) progress: Progress,
}

impl Publisher {
    pub(crate) async fn publish(
        &mut self,
        mut outputs: Vec<Output>,
        lost: &CancellationToken,
        hard_stop: &CancellationToken,
    ) -> Result<(), Outcome> {
        if outputs.is_empty() {
            return Ok(());
        }
        for (seq, o) in (self.next_seq..).zip(outputs.iter_mut()) {
            o.stamp(seq);
        }
        let events = weir_protocol::write_events(
            self.next_seq,
            outputs.iter().map(|o| EventParts {
                kind: &o.kind,
                ts: o.ts,
                source: o.source.as_deref(),
                data: &o.data,
            }),
        );
        let mut backoff = Duration::from_millis(25);
        let started = Instant::now();
        let mut retries = 0u32;
        let appended = loop {
            match self.ctx.bus.log.append(&self.id, &events, self.fence).await {
                Ok(a) => break a,
                Err(BusError::Fenced) => return Err(Outcome::Lost),
                Err(e) => {
                    self.progress.waiting();
                    metrics::counter!(names::PUBLISH_RETRIES).increment(1);
                    metrics::counter!(names::BUS_ERRORS, "op" => "append").increment(1);
                    // Logged once per publish (a leader election retries
                    // for seconds), and again when it is stored.
                    if retries == 0 {
                        tracing::warn!(error = %e, "publish failed; retrying the same message until it is stored");
                    } else {
                        tracing::debug!(error = %e, retry_in = ?backoff, "publish failed again");
                    }
                    retries += 1;
                    tokio::select! {
                        _ = lost.cancelled() => return Err(Outcome::Lost),
                        _ = hard_stop.cancelled() => return Err(Outcome::Shutdown),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        self.progress.stored();
        if retries > 0 {
            tracing::info!(retries, after = ?started.elapsed(), duplicate = appended.duplicate, "publish stored");
        }
        metrics::histogram!(names::PUBLISH_LATENCY).record(started.elapsed().as_secs_f64());
        metrics::histogram!(names::EVENTS_PER_PUBLISH).record(events.len() as f64);
        metrics::counter!(names::EVENTS_PUBLISHED).increment(events.len() as u64);
        PUBLISHED.fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.fence = appended.fence;
        self.next_seq += events.len() as u64;
        self.recorder.record(Update {
            last_seq: Some(self.next_seq - 1),
            ..Update::default()
        });
        Ok(())
    }
}
