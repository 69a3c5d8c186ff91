//! One upstream subscription per session per node, fanned out to every
//! local subscriber of that session.
//!
//! A [`Feed`] follows the session's log live and keeps its most recent
//! events in a bounded ring (always a contiguous run of seqs). Subscribers
//! read from the ring at their own pace; one that falls behind the ring's
//! start reads the log instead (see [`crate::subscription`]), through the
//! feed's [`PageCache`]: a page one subscriber reads from the log serves the
//! others at that position, so N subscribers behind the ring cost one
//! bounded cache, not N copies. The feed lives while someone holds it and
//! stops following once it has seen `end`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weir_bus::{BusError, EventLog, LogReader};
use weir_protocol::{RawEvent, SessionId};
use weir_telemetry::names;

use crate::frames::{Batch, Frames};
use crate::pages::PageCache;
use crate::ring::{Ring, RingRead};

/// Default bytes of log pages cached per session (`WEIR_LOG_CACHE`).
pub const DEFAULT_LOG_CACHE: usize = 4 << 20;

/// Most events in one page read from the log for the cache.
const PAGE_EVENTS: usize = 256;

#[derive(Clone)]
pub struct Hub {
    feeds: Arc<Mutex<HashMap<SessionId, Weak<Feed>>>>,
    /// Feeds started before anyone subscribed ([`Hub::warm`]), held until
    /// the first subscriber takes them or their time is up.
    warm: Arc<Mutex<HashMap<SessionId, Arc<Feed>>>>,
    log: Arc<dyn EventLog>,
    ring_capacity: usize,
    log_cache: usize,
    frame_cache: usize,
    log_readers: Arc<tokio::sync::Semaphore>,
}

pub struct Feed {
    ring: RwLock<Ring>,
    /// Log pages read for subscribers behind the ring, shared by them all.
    pages: Mutex<PageCache>,
    /// Frames encoded for its subscribers, shared by them all.
    frames: Arc<Frames>,
    /// The one log reader of the session on this node, with the seq it has
    /// read up to; the lock makes the feed read one page at a time, so that
    /// subscribers waiting for the same page find it in the cache.
    reader: tokio::sync::Mutex<Option<(Box<dyn LogReader>, u64)>>,
    /// Shared by the node: how many sessions may read the log at once.
    log_readers: Arc<tokio::sync::Semaphore>,
    /// Last seq in the ring; changes wake subscribers.
    last: watch::Sender<u64>,
    /// True once the upstream subscription is in place.
    ready: watch::Sender<bool>,
    stop: CancellationToken,
}

impl Feed {
    pub fn read(&self, cursor: u64, max: usize) -> RingRead {
        self.ring.read().expect("ring lock").after(cursor, max)
    }

    pub fn watch_last(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    /// Waits up to `wait` for the upstream subscription to be in place.
    async fn wait_ready(&self, wait: Duration) {
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(wait, ready.wait_for(|r| *r)).await;
    }

    /// The session's encoded frames, shared by its subscribers on this node.
    pub fn frames(&self) -> Arc<Frames> {
        self.frames.clone()
    }

    /// Up to `max` events after `cursor` from the page cache, if it has them.
    pub fn cached(&self, cursor: u64, max: usize) -> Option<Batch> {
        self.pages.lock().expect("cache lock").read(cursor, max)
    }

    /// Up to `max` events after `cursor`: from the cache if another
    /// subscriber read them while this one waited its turn, else one page
    /// from the log (holding a log-reader permit), which goes into the cache
    /// for the others. Empty when the log has nothing after `cursor`; the
    /// first event is later than `cursor + 1` when the events between expired.
    pub async fn read_log(
        &self,
        log: &Arc<dyn EventLog>,
        session: &SessionId,
        cursor: u64,
        max: usize,
    ) -> Result<Batch, BusError> {
        let mut shared = self.reader.lock().await;
        if let Some(events) = self.cached(cursor, max) {
            return Ok(events);
        }
        let _permit = self.log_readers.acquire().await.expect("never closed");
        // Go on from where the last page ended, or start a reader here. On
        // an error the reader is dropped: the next read starts a new one.
        let mut reader = match shared.take() {
            Some((r, at)) if at == cursor => r,
            _ => log.reader(session, cursor).await?,
        };
        let page = reader.next_page(PAGE_EVENTS).await?;
        metrics::counter!(names::LOG_READS).increment(1);
        let Some(last) = page.last().map(|e| e.seq) else {
            return Ok(Batch::default()); // caught up with the log
        };
        *shared = Some((reader, last));
        drop(shared);
        let page: Arc<[RawEvent]> = page.into();
        self.pages.lock().expect("cache lock").insert(&page);
        Ok(Batch::slice(&page, 0..max.max(1)))
    }

    fn push(&self, batch: Vec<RawEvent>) -> bool {
        let ended = batch.last().is_some_and(|e| e.end);
        let mut ring = self.ring.write().expect("ring lock");
        if ring.push(batch) {
            metrics::counter!(names::UPSTREAM_GAPS).increment(1);
        }
        let last = ring.last_seq().unwrap_or(0);
        drop(ring);
        self.last.send_replace(last);
        ended
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.cancel();
        metrics::gauge!(names::SESSIONS_SUBSCRIBED).decrement(1.0);
    }
}

impl Hub {
    /// `max_log_readers` bounds the subscribers reading the log at once, so
    /// a crowd that fell behind the ring queues instead of flooding the bus.
    pub fn new(log: Arc<dyn EventLog>, ring_capacity: usize, max_log_readers: usize) -> Hub {
        Hub {
            feeds: Arc::default(),
            warm: Arc::default(),
            log,
            ring_capacity: ring_capacity.max(1),
            log_cache: DEFAULT_LOG_CACHE,
            frame_cache: crate::frames::DEFAULT_FRAME_CACHE,
            log_readers: Arc::new(tokio::sync::Semaphore::new(max_log_readers.max(1))),
        }
    }

    /// Bytes of log pages each followed session may cache (default
    /// [`DEFAULT_LOG_CACHE`]).
    pub fn with_log_cache(mut self, bytes: usize) -> Hub {
        self.log_cache = bytes;
        self
    }

    /// Bytes of encoded frames each followed session may keep (default
    /// [`crate::frames::DEFAULT_FRAME_CACHE`]).
    pub fn with_frame_cache(mut self, bytes: usize) -> Hub {
        self.frame_cache = bytes;
        self
    }

    /// The sessions this node follows, each with its subscribers here.
    /// (A warm feed's hold is not a subscriber.)
    pub fn followed(&self) -> Vec<(SessionId, usize)> {
        let warm = self.warm.lock().expect("hub lock");
        let feeds = self.feeds.lock().expect("hub lock");
        feeds
            .iter()
            .filter(|(_, f)| f.strong_count() > 0)
            .map(|(id, f)| {
                let held = usize::from(warm.contains_key(id));
                (id.clone(), f.strong_count().saturating_sub(held))
            })
            .collect()
    }

    /// The node's feed of `session`, started if nobody holds one. Waits a
    /// moment for the upstream subscription so that new subscribers start
    /// from the ring instead of the log.
    pub async fn feed(&self, session: &SessionId) -> Arc<Feed> {
        // A warm feed's first subscriber holds it from here on.
        let warmed = self.warm.lock().expect("hub lock").remove(session);
        let feed = self.feed_now(session);
        drop(warmed);
        feed.wait_ready(Duration::from_secs(2)).await;
        feed
    }

    /// Starts following a session nobody reads yet (one just created here)
    /// and holds its feed for up to `hold`, until its first subscriber takes
    /// it: a client that connects soon after finds the session's first
    /// events in the ring instead of reading them from the log. Waits up to
    /// `wait` for the upstream subscription.
    pub async fn warm(&self, session: &SessionId, wait: Duration, hold: Duration) {
        let feed = self.feed_now(session);
        let held = Arc::downgrade(&feed);
        let previous = self
            .warm
            .lock()
            .expect("hub lock")
            .insert(session.clone(), feed.clone());
        drop(previous);
        let (warm, id) = (self.warm.clone(), session.clone());
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let mut warm = warm.lock().expect("hub lock");
            if warm
                .get(&id)
                .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), held.as_ptr()))
            {
                warm.remove(&id);
            }
        });
        feed.wait_ready(wait).await;
    }

    /// The node's feed of `session`, started (not yet ready) if nobody holds one.
    fn feed_now(&self, session: &SessionId) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().expect("hub lock");
        if let Some(f) = feeds.get(session).and_then(Weak::upgrade) {
            return f;
        }
        feeds.retain(|_, f| f.strong_count() > 0);
        let f = Arc::new(Feed {
            ring: RwLock::new(Ring::new(self.ring_capacity)),
            pages: Mutex::new(PageCache::new(self.log_cache)),
            frames: Arc::new(Frames::new(self.frame_cache)),
            reader: tokio::sync::Mutex::new(None),
            log_readers: self.log_readers.clone(),
            last: watch::channel(0).0,
            ready: watch::channel(false).0,
            stop: CancellationToken::new(),
        });
        metrics::gauge!(names::SESSIONS_SUBSCRIBED).increment(1.0);
        metrics::counter!(names::FEEDS_STARTED).increment(1);
        feeds.insert(session.clone(), Arc::downgrade(&f));
        tokio::spawn(follow(
            self.log.clone(),
            session.clone(),
            Arc::downgrade(&f),
            f.stop.clone(),
        ));
        f
    }
}

/// How long a feed may go without a message before it checks, once, that
/// the log has nothing it missed (a subscription that died silently).
const IDLE_CHECK: Duration = Duration::from_secs(5);

async fn stale(log: Arc<dyn EventLog>, session: SessionId, feed: Weak<Feed>) -> bool {
    let Some(f) = feed.upgrade() else {
        return false;
    };
    let ring_last = *f.last.borrow();
    drop(f);
    matches!(log.last(&session).await, Ok(Some(l)) if l.event.seq > ring_last)
}

/// Follows the session's log into the feed, re-subscribing after bus errors,
/// until the feed is dropped or has seen `end`.
async fn follow(
    log: Arc<dyn EventLog>,
    session: SessionId,
    feed: Weak<Feed>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            s = log.follow(&session) => s,
        };
        match subscribed {
            Ok(mut stream) => {
                if let Some(f) = feed.upgrade() {
                    f.ready.send_replace(true);
                }
                // The idle check asks the stream's leader, which can take
                // the whole request timeout while the stream elects one: it
                // runs beside the feed, never in its way, and a message
                // that comes meanwhile ends it (the subscription lives).
                let idle = tokio::time::sleep(IDLE_CHECK);
                tokio::pin!(idle);
                let mut checking: Option<futures::future::BoxFuture<'static, bool>> = None;
                loop {
                    let item = tokio::select! {
                        _ = stop.cancelled() => return,
                        item = stream.next() => item,
                        _ = &mut idle, if checking.is_none() => {
                            let check = stale(log.clone(), session.clone(), feed.clone());
                            checking = Some(Box::pin(check));
                            continue;
                        }
                        behind = async { checking.as_mut().expect("checking").await },
                            if checking.is_some() => {
                            checking = None;
                            idle.as_mut().reset(tokio::time::Instant::now() + IDLE_CHECK);
                            if behind {
                                tracing::warn!(session = %session, "live feed fell behind the log; following again");
                                break;
                            }
                            continue;
                        }
                    };
                    checking = None;
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + IDLE_CHECK);
                    match item {
                        Some(Ok(batch)) => {
                            backoff = Duration::from_millis(100);
                            let Some(f) = feed.upgrade() else { return };
                            if f.push(batch) {
                                return; // `end` seen: nothing follows it
                            }
                        }
                        // A read the follow could not make (its last message,
                        // while the stream elects): follow again shortly rather
                        // than wait for the idle check, or a feed that missed a
                        // session's last events would sit on them.
                        Some(Err(e)) => {
                            metrics::counter!(names::BUS_ERRORS, "op" => "follow").increment(1);
                            tracing::warn!(session = %session, error = %e, "live feed error; following again");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => {
                metrics::counter!(names::BUS_ERRORS, "op" => "follow").increment(1);
                tracing::warn!(session = %session, error = %e, "could not follow session; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_bus::{Bus, BusConfig, Fence};
    use weir_protocol::Event;

    /// A log whose leader never answers `last` (a stream electing one, the
    /// request waiting out its timeout); everything else is the memory bus.
    struct LeaderSilent(Arc<dyn EventLog>);

    #[async_trait::async_trait]
    impl EventLog for LeaderSilent {
        async fn append(
            &self,
            s: &SessionId,
            e: &[RawEvent],
            f: Fence,
        ) -> Result<weir_bus::Appended, BusError> {
            self.0.append(s, e, f).await
        }
        async fn last(&self, _: &SessionId) -> Result<Option<weir_bus::LastEvent>, BusError> {
            std::future::pending().await
        }
        async fn reader(&self, s: &SessionId, after: u64) -> Result<Box<dyn LogReader>, BusError> {
            self.0.reader(s, after).await
        }
        async fn follow(&self, s: &SessionId) -> Result<weir_bus::EventStream, BusError> {
            self.0.follow(s).await
        }
        async fn ping(&self) -> Result<(), BusError> {
            Ok(())
        }
    }

    fn token(seq: u64) -> RawEvent {
        Event::new(seq, "token", None, serde_json::json!({"text": "x"})).to_raw()
    }

    /// On tokio's paused clock: the feed goes idle, its check waits on a
    /// leader that does not answer, and the events stored meanwhile still
    /// reach the ring at once.
    #[tokio::test(start_paused = true)]
    async fn live_events_reach_the_ring_while_the_idle_check_waits_on_the_leader() {
        let bus = Bus::memory(BusConfig::default());
        let log: Arc<dyn EventLog> = Arc::new(LeaderSilent(bus.log.clone()));
        let id = SessionId::parse("idle").unwrap();
        let stored = bus.log.append(&id, &[token(1)], Fence(0)).await.unwrap();
        let hub = Hub::new(log, 16, 4);
        let feed = hub.feed(&id).await;
        let mut last = feed.last.subscribe();
        last.wait_for(|&l| l == 1).await.unwrap();
        // Idle past the check: it is now waiting on the leader.
        tokio::time::sleep(IDLE_CHECK * 2).await;
        bus.log
            .append(&id, &[token(2)], stored.fence)
            .await
            .unwrap();
        let arrived = tokio::time::timeout(Duration::from_millis(100), last.wait_for(|&l| l == 2));
        assert!(
            arrived.await.is_ok(),
            "the live event waited on the idle check"
        );
    }
}
