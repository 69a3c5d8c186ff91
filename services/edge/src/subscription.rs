//! One subscriber's cursor over a session: "read the log from `after`, then
//! follow it". Events come from the node's live ring when it holds the next
//! seq, from the feed's shared page cache or the log (one page at a time,
//! through the feed) when the subscriber is behind the ring; either way the
//! subscriber gets every seq after its cursor once, in order. A subscriber
//! holds no page of its own: what it hands to its connection's buffer is a
//! [`Batch`] of the ring's or the cache's events, shared, not copied.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_bus::{BusError, EventLog};
use weir_protocol::SessionId;
use weir_telemetry::names;

use crate::frames::{Batch, Frames};
use crate::hub::Feed;
use crate::ring::RingRead;

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
    /// The last seq handed out.
    cursor: u64,
    pacer: Option<Pacer>,
}

/// At most `rate` events a second, evenly spaced: each event has a slot
/// `1/rate` after the previous one's, and no credit builds up while the
/// session is quiet, so a client that is behind catches up at the paced
/// rate, never in a burst.
#[derive(Debug, Clone)]
pub struct Pacer {
    period: Duration,
    next_slot: Option<tokio::time::Instant>,
}

impl Pacer {
    /// `None` for 0 (not paced).
    pub fn new(rate: u32) -> Option<Pacer> {
        (rate > 0).then(|| Pacer {
            period: Duration::from_secs_f64(1.0 / f64::from(rate)),
            next_slot: None,
        })
    }

    /// Waits for the next slot (cancel-safe: nothing changes until
    /// [`Pacer::sent`]).
    async fn wait(&self) {
        if let Some(at) = self.next_slot {
            tokio::time::sleep_until(at).await;
        }
    }

    /// One event went out: the next slot is one period after this one's.
    /// An event a little late (timer granularity) keeps the schedule, so
    /// the rate does not drift; one later than a whole period (the session
    /// was quiet) starts a new schedule from now, so no burst follows.
    fn sent(&mut self) {
        let now = tokio::time::Instant::now();
        let from = match self.next_slot {
            Some(slot) if slot + self.period > now => slot,
            _ => now,
        };
        self.next_slot = Some(from + self.period);
    }
}

/// What a connection pulls its events from: a [`Subscription`] in the
/// service, a recording double in the tests of the connection's
/// backpressure.
pub trait Source: Send + 'static {
    /// Waits for up to `max` events after the cursor (see
    /// [`Subscription::next`]).
    fn next(&mut self, max: usize) -> impl Future<Output = Result<Batch, DeliveryError>> + Send;
    /// The last seq handed out.
    fn cursor(&self) -> u64;
    /// The frames the session's subscribers on this node share.
    fn frames(&self) -> Arc<Frames>;
}

impl Source for Subscription {
    fn next(&mut self, max: usize) -> impl Future<Output = Result<Batch, DeliveryError>> + Send {
        Subscription::next(self, max)
    }
    fn cursor(&self) -> u64 {
        Subscription::cursor(self)
    }
    fn frames(&self) -> Arc<Frames> {
        Subscription::frames(self)
    }
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
            cursor: after,
            pacer: None,
        }
    }

    /// Delivers at most `rate` events a second (0: as they come).
    pub fn paced(mut self, rate: u32) -> Subscription {
        self.pacer = Pacer::new(rate);
        self
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The frames the session's subscribers on this node share.
    pub fn frames(&self) -> Arc<Frames> {
        self.feed.frames()
    }

    /// Waits for up to `max` events after the cursor. Bus errors are retried
    /// (the client keeps its connection and heartbeats while the bus heals);
    /// dropping the future loses nothing, as the cursor only moves on return.
    pub async fn next(&mut self, max: usize) -> Result<Batch, DeliveryError> {
        let Some(pacer) = &self.pacer else {
            return self.next_unpaced(max).await;
        };
        // Paced: one event per slot, so no frame can hold more than the
        // pace allows (coalescing cannot defeat it).
        pacer.wait().await;
        let events = self.next_unpaced(1).await?;
        if let Some(p) = self.pacer.as_mut() {
            p.sent();
        }
        Ok(events)
    }

    async fn next_unpaced(&mut self, max: usize) -> Result<Batch, DeliveryError> {
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
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Events if any are available now; `None` when caught up.
    async fn try_next(&mut self, max: usize) -> Result<Option<Batch>, Step> {
        // Mark the ring's state as seen before reading it, so that a change
        // after this read wakes the wait in `next`.
        self.last.borrow_and_update();
        let behind = match self.feed.read(self.cursor, max) {
            RingRead::Events(events) => return Ok(Some(self.advance(events))),
            // Caught up with a live feed: wait for it, never poll the log.
            RingRead::Nothing => return Ok(None),
            RingRead::Empty if !log_has_more(&self.log, &self.session, self.cursor).await? => {
                return Ok(None)
            }
            RingRead::Empty => false,
            RingRead::Behind { .. } => true,
        };
        let page = match self.feed.cached(self.cursor, max) {
            Some(events) => events,
            None => {
                let (log, session) = (&self.log, &self.session);
                self.feed.read_log(log, session, self.cursor, max).await?
            }
        };
        let Some(first) = page.first() else {
            if behind {
                // The ring holds later events, so the log has these: the
                // replica that answered is behind (one that rejoined after a
                // partition). Read again; waiting on the ring would wait for
                // ever once the session has ended.
                return Err(Step::Bus(BusError::Unavailable(
                    "the log replica read is behind the live feed".into(),
                )));
            }
            // The log has nothing more: back to the ring.
            return Ok(None);
        };
        if let Err(gap) = crate::expiry::check_first(self.cursor, first.seq) {
            return Err(Step::Expired(DeliveryError::Expired {
                from: gap.from,
                to: gap.to,
            }));
        }
        Ok(Some(self.advance(page)))
    }

    fn advance(&mut self, events: Batch) -> Batch {
        if let Some(last) = events.last() {
            self.cursor = last.seq;
        }
        events
    }
}

/// Whether the log holds events after the cursor (asked only while the
/// ring is empty: the feed is starting, or the session has no events yet).
/// Any replica's answer will do: one a moment behind only means waiting for
/// the feed, which reads the log's last message itself and, when idle,
/// checks with the leader that it missed nothing.
async fn log_has_more(
    log: &Arc<dyn EventLog>,
    session: &SessionId,
    cursor: u64,
) -> Result<bool, Step> {
    let last = log.latest(session).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paced_events_are_evenly_spaced_with_no_burst_after_a_pause() {
        assert!(Pacer::new(0).is_none());
        let mut p = Pacer::new(20).unwrap();
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            p.wait().await;
            at.push(start.elapsed());
            p.sent();
        }
        let ms: Vec<u128> = at.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 50, 100, 150, 200]);
        // A quiet second earns no credit: the next two are still 50 ms apart.
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.wait().await;
        let resumed = tokio::time::Instant::now();
        p.sent();
        p.wait().await;
        assert_eq!(resumed.elapsed(), Duration::from_millis(50));
    }

    /// protocol.md §7: a paced client that is behind (the whole session is
    /// in the log) catches up at the pace, one event per slot, never in a
    /// burst; measured on tokio's paused clock, not the wall clock.
    #[tokio::test(start_paused = true)]
    async fn a_paced_subscriber_behind_the_log_gets_one_event_per_slot() {
        use weir_bus::{Bus, BusConfig, Fence};
        use weir_protocol::{EndReason, Event};

        let bus = Bus::memory(BusConfig::default());
        let id = SessionId::parse("paced").unwrap();
        let mut events: Vec<_> = (1..=9)
            .map(|s| Event::new(s, "token", None, serde_json::json!({"text": "x"})).to_raw())
            .collect();
        events.push(Event::end(10, EndReason::Completed, None).to_raw());
        bus.log.append(&id, &events, Fence(0)).await.unwrap();
        let hub = crate::hub::Hub::new(bus.log.clone(), 16, 4);
        let feed = hub.feed(&id).await;
        let mut sub = Subscription::new(id, feed, bus.log.clone(), 0).paced(20);
        let start = tokio::time::Instant::now();
        let mut got = Vec::new();
        loop {
            let batch = sub.next(100).await.unwrap();
            assert_eq!(
                batch.len(),
                1,
                "a paced read returned {} events",
                batch.len()
            );
            got.push((batch[0].seq, start.elapsed().as_millis()));
            if batch[0].end {
                break;
            }
        }
        let want: Vec<(u64, u128)> = (1..=10).map(|s| (s, (s as u128 - 1) * 50)).collect();
        assert_eq!(got, want);
    }

    /// A log whose reads are first answered by a replica that is behind:
    /// its first pages come back empty.
    struct Lagging {
        inner: Arc<dyn EventLog>,
        empty_pages: Arc<std::sync::atomic::AtomicUsize>,
    }

    struct LaggingReader {
        inner: Box<dyn weir_bus::LogReader>,
        empty_pages: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl weir_bus::LogReader for LaggingReader {
        async fn next_page(
            &mut self,
            max: usize,
        ) -> Result<Vec<weir_protocol::RawEvent>, BusError> {
            use std::sync::atomic::Ordering;
            let lag = self.empty_pages.load(Ordering::SeqCst);
            if lag > 0 {
                self.empty_pages.store(lag - 1, Ordering::SeqCst);
                return Ok(Vec::new());
            }
            self.inner.next_page(max).await
        }
    }

    #[async_trait::async_trait]
    impl EventLog for Lagging {
        async fn append(
            &self,
            s: &SessionId,
            e: &[weir_protocol::RawEvent],
            f: weir_bus::Fence,
        ) -> Result<weir_bus::Appended, BusError> {
            self.inner.append(s, e, f).await
        }
        async fn last(&self, s: &SessionId) -> Result<Option<weir_bus::LastEvent>, BusError> {
            self.inner.last(s).await
        }
        async fn latest(&self, s: &SessionId) -> Result<Option<weir_bus::LastEvent>, BusError> {
            self.inner.latest(s).await
        }
        async fn reader(
            &self,
            s: &SessionId,
            after: u64,
        ) -> Result<Box<dyn weir_bus::LogReader>, BusError> {
            Ok(Box::new(LaggingReader {
                inner: self.inner.reader(s, after).await?,
                empty_pages: self.empty_pages.clone(),
            }))
        }
        async fn follow(&self, s: &SessionId) -> Result<weir_bus::EventStream, BusError> {
            self.inner.follow(s).await
        }
        async fn ping(&self) -> Result<(), BusError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_behind_the_ring_reads_again_when_a_lagging_replica_answers_empty() {
        use weir_bus::{Bus, BusConfig, Fence};
        use weir_protocol::{EndReason, Event};

        let bus = Bus::memory(BusConfig::default());
        let id = SessionId::parse("lagging").unwrap();
        let mut fence = Fence(0);
        for s in 1..=9 {
            let e = Event::new(s, "token", None, serde_json::json!({"text": "x"})).to_raw();
            fence = bus.log.append(&id, &[e], fence).await.unwrap().fence;
        }
        let end = Event::end(10, EndReason::Completed, None).to_raw();
        bus.log.append(&id, &[end], fence).await.unwrap();
        let log: Arc<dyn EventLog> = Arc::new(Lagging {
            inner: bus.log.clone(),
            empty_pages: Arc::new(2.into()),
        });
        // The feed's ring holds the end only: the subscriber is behind it.
        let hub = crate::hub::Hub::new(log.clone(), 16, 4);
        let feed = hub.feed(&id).await;
        let mut sub = Subscription::new(id, feed, log, 0);
        let mut seqs = Vec::new();
        let read_all = async {
            while seqs.last() != Some(&10) {
                let batch = sub.next(100).await.unwrap();
                seqs.extend(batch.iter().map(|e| e.seq));
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read_all)
            .await
            .expect("the subscriber waited on a ring that will not move");
        assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    }
}
