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

use std::collections::{HashMap, VecDeque};
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

/// The newest events of a session, contiguous by seq, in the blocks they
/// came in (one per bus message): a read hands out a [`Batch`] of a block,
/// shared with every other subscriber that read it.
pub struct Ring {
    blocks: VecDeque<Arc<[RawEvent]>>,
    /// Events in `blocks`.
    len: usize,
    capacity: usize,
}

impl Ring {
    /// Keeps at least the last `capacity` events (and less than one more
    /// block besides).
    pub fn new(capacity: usize) -> Ring {
        Ring {
            blocks: VecDeque::new(),
            len: 0,
            capacity,
        }
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.blocks.front().map(|b| b[0].seq)
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.blocks.back().map(|b| b[b.len() - 1].seq)
    }

    /// Adds a batch; returns true if it did not follow on (the ring restarts).
    pub fn push(&mut self, mut batch: Vec<RawEvent>) -> bool {
        let mut gap = false;
        if let Some(last) = self.last_seq() {
            batch.retain(|e| e.seq > last); // repeats after a reconnect
            gap = batch.first().is_some_and(|e| e.seq != last + 1);
        }
        // Bus messages are contiguous; anything else starts over after its
        // last break.
        let from = (1..batch.len())
            .rev()
            .find(|&i| batch[i].seq != batch[i - 1].seq + 1);
        if let Some(i) = from {
            gap = true;
            batch.drain(..i);
        }
        if gap {
            self.blocks.clear();
            self.len = 0;
        }
        if batch.is_empty() {
            return gap;
        }
        self.len += batch.len();
        self.blocks.push_back(batch.into());
        while let Some(front) = self.blocks.front() {
            if self.len - front.len() < self.capacity {
                break;
            }
            self.len -= front.len();
            self.blocks.pop_front();
        }
        gap
    }

    /// Up to `max` events with seq > `cursor` (never past the end of the
    /// block that holds cursor + 1), when the ring holds cursor + 1.
    pub fn after(&self, cursor: u64, max: usize) -> RingRead {
        let (Some(first), Some(last)) = (self.first_seq(), self.last_seq()) else {
            return RingRead::Empty;
        };
        if cursor + 1 < first {
            return RingRead::Behind { first };
        }
        if cursor >= last {
            return RingRead::Nothing;
        }
        let want = cursor + 1;
        // A live reader wants the newest block. Else: every block holds at
        // least one event, so the one that holds `want` is at most
        // `last - want` blocks before the newest, and in a live session
        // (one event a block) it is that one: a reader a few events behind
        // (a loaded one) finds it in one probe, not a search whose every
        // probe is a block behind a pointer.
        let newest = self.blocks.len() - 1;
        let guess = newest.saturating_sub((last - want) as usize);
        let i = if self.blocks[newest][0].seq <= want {
            newest
        } else if self.blocks[guess][self.blocks[guess].len() - 1].seq >= want {
            guess // no later than the block holding `want`: it starts at or before it
        } else {
            self.blocks.partition_point(|b| b[b.len() - 1].seq < want)
        };
        let block = &self.blocks[i];
        let start = (want - block[0].seq) as usize;
        RingRead::Events(Batch::slice(block, start..start + max.max(1)))
    }
}

#[derive(Debug)]
pub enum RingRead {
    Events(Batch),
    /// The ring starts at `first`, after the cursor: read the log.
    Behind {
        first: u64,
    },
    /// Nothing after the cursor yet: the feed will bring it.
    Nothing,
    /// The ring holds nothing (the feed is starting): only the log can tell.
    Empty,
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

async fn stale(log: &Arc<dyn EventLog>, session: &SessionId, feed: &Weak<Feed>) -> bool {
    let Some(f) = feed.upgrade() else {
        return false;
    };
    let ring_last = *f.last.borrow();
    drop(f);
    matches!(log.last(session).await, Ok(Some(l)) if l.event.seq > ring_last)
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
                backoff = Duration::from_millis(100);
                if let Some(f) = feed.upgrade() {
                    f.ready.send_replace(true);
                }
                loop {
                    let item = tokio::select! {
                        _ = stop.cancelled() => return,
                        item = stream.next() => item,
                        _ = tokio::time::sleep(IDLE_CHECK) => {
                            if stale(&log, &session, &feed).await {
                                tracing::warn!(session = %session, "live feed fell behind the log; following again");
                                break;
                            }
                            continue;
                        }
                    };
                    match item {
                        Some(Ok(batch)) => {
                            let Some(f) = feed.upgrade() else { return };
                            if f.push(batch) {
                                return; // `end` seen: nothing follows it
                            }
                        }
                        Some(Err(e)) => {
                            metrics::counter!(names::BUS_ERRORS, "op" => "follow").increment(1);
                            tracing::warn!(session = %session, error = %e, "live feed error");
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
    use weir_protocol::Event;

    fn evs(seqs: std::ops::RangeInclusive<u64>) -> Vec<RawEvent> {
        seqs.map(|s| Event::new(s, "token", None, serde_json::json!({})).to_raw())
            .collect()
    }

    fn seqs(r: RingRead) -> Vec<u64> {
        match r {
            RingRead::Events(e) => e.iter().map(|e| e.seq).collect(),
            other => panic!("expected events, got {other:?}"),
        }
    }

    #[test]
    fn ring_is_bounded_contiguous_and_deduplicating() {
        let mut ring = Ring::new(4);
        assert!(matches!(ring.after(0, 10), RingRead::Empty));
        assert!(!ring.push(evs(1..=3)));
        assert!(!ring.push(evs(2..=6))); // repeats dropped
        assert!(!ring.push(evs(7..=7)));
        // At least 4 kept, in whole blocks: 1..=3 went, 4..=6 stays.
        assert_eq!((ring.first_seq(), ring.last_seq()), (Some(4), Some(7)));
        assert!(matches!(ring.after(2, 10), RingRead::Behind { first: 4 }));
        assert_eq!(seqs(ring.after(3, 10)), vec![4, 5, 6]); // one block at a time
        assert_eq!(seqs(ring.after(4, 1)), vec![5]);
        assert_eq!(seqs(ring.after(6, 10)), vec![7]);
        assert!(matches!(ring.after(7, 10), RingRead::Nothing));
        // A gap restarts the ring at the new batch.
        assert!(ring.push(evs(9..=10)));
        assert!(matches!(ring.after(7, 10), RingRead::Behind { first: 9 }));
        assert_eq!(seqs(ring.after(8, 10)), vec![9, 10]);
        // So does one inside a batch, from its last break.
        let mut broken = evs(11..=12);
        broken.extend(evs(20..=21));
        assert!(ring.push(broken));
        assert_eq!((ring.first_seq(), ring.last_seq()), (Some(20), Some(21)));
    }

    #[test]
    fn every_cursor_finds_the_block_that_holds_its_next_event() {
        // One-event blocks (the guess from the newest), then batches of other
        // sizes between them (where the guess falls short and the search
        // takes over).
        let mut ring = Ring::new(1024);
        let mut next = 1;
        for size in [1, 1, 3, 1, 7, 1, 1, 2, 5, 1, 1, 1] {
            ring.push(evs(next..=next + size - 1));
            next += size;
        }
        let last = next - 1;
        let mut blocks = Vec::new();
        for cursor in 0..last {
            let got = seqs(ring.after(cursor, 64));
            assert_eq!(got[0], cursor + 1, "after {cursor}");
            assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
            blocks.push(*got.last().unwrap());
        }
        // Never past the end of the block that holds cursor + 1.
        assert_eq!(blocks[2..5], [5, 5, 5]);
        assert!(matches!(ring.after(last, 64), RingRead::Nothing));
    }

    #[test]
    fn readers_of_the_ring_share_its_events() {
        let mut ring = Ring::new(8);
        ring.push(evs(1..=4));
        let (RingRead::Events(a), RingRead::Events(b)) = (ring.after(0, 4), ring.after(1, 4))
        else {
            panic!("events expected")
        };
        assert!(std::ptr::eq(&a[1], &b[0]), "the same event, not a copy");
    }
}
