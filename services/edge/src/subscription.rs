//! One subscriber's cursor over a session: "read the log from `after`, then
//! follow it". Events come from the node's live ring when it holds the next
//! seq, from the log when the subscriber is behind the ring; either way the
//! subscriber gets every seq after its cursor once, in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_bus::{BusError, EventLog, LogReader};
use weir_protocol::{RawEvent, SessionId};
use weir_telemetry::names;

use crate::hub::{Feed, RingRead};

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Events after the cursor are gone from the log (retention passed).
    #[error("history expired: events {from}..{to} are no longer stored")]
    Expired { from: u64, to: u64 },
}

pub struct Subscription {
    session: SessionId,
    feed: Arc<Feed>,
    log: Arc<dyn EventLog>,
    last: watch::Receiver<u64>,
    reader: Option<Box<dyn LogReader>>,
    /// The last seq handed out.
    cursor: u64,
}

impl Subscription {
    pub fn new(
        session: SessionId,
        feed: Arc<Feed>,
        log: Arc<dyn EventLog>,
        after: u64,
    ) -> Subscription {
        Subscription {
            session,
            last: feed.watch_last(),
            feed,
            log,
            reader: None,
            cursor: after,
        }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Waits for up to `max` events after the cursor. Bus errors are retried
    /// (the client keeps its connection and heartbeats while the bus heals);
    /// dropping the future loses nothing, as the cursor only moves on return.
    pub async fn next(&mut self, max: usize) -> Result<Vec<RawEvent>, DeliveryError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.try_next(max).await {
                Ok(Some(events)) => return Ok(events),
                Ok(None) => {
                    // Caught up: wait for the ring to move.
                    if self.last.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                Err(Step::Expired(e)) => return Err(e),
                Err(Step::Bus(e)) => {
                    metrics::counter!(names::BUS_ERRORS, "op" => "read").increment(1);
                    tracing::warn!(session = %self.session, error = %e, "log read failed; retrying");
                    self.reader = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Events if any are available now; `None` when caught up.
    async fn try_next(&mut self, max: usize) -> Result<Option<Vec<RawEvent>>, Step> {
        if self.reader.is_none() {
            // Mark the ring's state as seen before reading it, so that a
            // change after this read wakes the wait in `next`.
            self.last.borrow_and_update();
            match self.feed.read(self.cursor, max) {
                RingRead::Events(events) => return Ok(Some(self.advance(events))),
                // Caught up with a live feed: wait for it, never poll the log.
                RingRead::Nothing => return Ok(None),
                RingRead::Empty if !log_has_more(&self.log, &self.session, self.cursor).await? => {
                    return Ok(None)
                }
                RingRead::Empty | RingRead::Behind { .. } => {}
            }
            let permits = self.feed.log_readers.clone();
            let _permit = permits.acquire().await.expect("never closed");
            self.reader = Some(self.log.reader(&self.session, self.cursor).await?);
        }
        let permits = self.feed.log_readers.clone();
        let permit = permits.acquire().await.expect("never closed");
        let reader = self.reader.as_mut().expect("set above");
        let page = reader.next_page(max).await?;
        drop(permit);
        metrics::counter!(names::LOG_READS).increment(1);
        let Some(first) = page.first() else {
            // The log has nothing more: back to the ring.
            self.reader = None;
            return Ok(None);
        };
        if first.seq != self.cursor + 1 {
            return Err(Step::Expired(DeliveryError::Expired {
                from: self.cursor + 1,
                to: first.seq - 1,
            }));
        }
        Ok(Some(self.advance(page)))
    }

    fn advance(&mut self, events: Vec<RawEvent>) -> Vec<RawEvent> {
        if let Some(last) = events.last() {
            self.cursor = last.seq;
        }
        events
    }
}

/// Whether the log holds events after the cursor (asked only while the
/// ring is empty: the feed is starting, or the session has no events yet).
async fn log_has_more(
    log: &Arc<dyn EventLog>,
    session: &SessionId,
    cursor: u64,
) -> Result<bool, Step> {
    let last = log.last(session).await?;
    Ok(last.is_some_and(|l| l.event.seq > cursor))
}

enum Step {
    Expired(DeliveryError),
    Bus(BusError),
}

impl From<BusError> for Step {
    fn from(e: BusError) -> Step {
        Step::Bus(e)
    }
}
