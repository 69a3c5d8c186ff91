//! What the subscribers of one session share besides log pages: the events
//! they hold and the frames encoded from them.
//!
//! A [`Batch`] is a run of events inside a block that the ring, the page
//! cache and every connection's buffer point into: taking events is a
//! refcount, never a copy of their structs or bytes. [`Frames`] keeps the
//! encoded frames of a session by encoding and seq range, bounded in bytes:
//! a frame is built once on the node and its bytes go to every subscriber
//! whose next frame is that range. Frames are cut at fixed seq boundaries
//! ([`frame_room`]), so subscribers at one position ask for the same ranges
//! whatever their cursor was when they joined. Nobody holds a frame for the
//! others: a subscriber takes a refcounted copy of its bytes and writes it,
//! and one that comes back to an evicted range builds it again.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex};

use tungstenite::Utf8Bytes;
use weir_protocol::RawEvent;
use weir_telemetry::names;

/// Default bytes of event JSON in one frame (`WEIR_MAX_FRAME_BYTES`).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 10;

/// Default bytes of encoded frames kept per session (`WEIR_FRAME_CACHE`).
pub const DEFAULT_FRAME_CACHE: usize = 1 << 20;

/// Contiguous events, shared with whoever else holds their block.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    block: Option<Arc<[RawEvent]>>,
    range: Range<usize>,
}

impl Batch {
    /// A whole block of events.
    pub fn new(events: Vec<RawEvent>) -> Batch {
        let block: Arc<[RawEvent]> = events.into();
        Batch::slice(&block, 0..block.len())
    }

    /// `range` of `block` (clamped to it).
    pub fn slice(block: &Arc<[RawEvent]>, range: Range<usize>) -> Batch {
        let end = range.end.min(block.len());
        Batch {
            block: Some(block.clone()),
            range: range.start.min(end)..end,
        }
    }

    /// Splits off the first `n` events (all if fewer); `self` keeps the rest.
    pub fn split_to(&mut self, n: usize) -> Batch {
        let mid = (self.range.start + n).min(self.range.end);
        let head = Batch {
            block: self.block.clone(),
            range: self.range.start..mid,
        };
        self.range.start = mid;
        head
    }
}

impl Deref for Batch {
    type Target = [RawEvent];

    fn deref(&self) -> &[RawEvent] {
        match &self.block {
            Some(b) => &b[self.range.clone()],
            None => &[],
        }
    }
}

/// How many events the next frame after `cursor` may hold: up to the next
/// multiple of `max_frame_events`, so that frames of every subscriber at
/// one position cover the same seqs.
pub fn frame_room(cursor: u64, max_frame_events: usize) -> usize {
    let f = max_frame_events.max(1) as u64;
    (f - cursor % f) as usize
}

/// How many of `events` (at most `room`) one frame takes: all while their
/// JSON stays within `max_bytes`, and always at least one.
pub fn frame_len<'a>(
    events: impl IntoIterator<Item = &'a RawEvent>,
    room: usize,
    max_bytes: usize,
) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for ev in events.into_iter().take(room) {
        bytes += ev.json.len() + 1;
        if n > 0 && bytes > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// The wire formats a shared frame is kept in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// A WebSocket `events` frame.
    Ws,
    /// SSE events, one per weir event.
    Sse,
}

type Key = (Encoding, u64, u64);

/// References to a session's frames when one subscriber reads it here: the
/// feed's and the subscriber's.
const ALONE: usize = 2;

/// A session's encoded frames, bounded in bytes, least recently used first
/// out.
pub struct Frames {
    inner: Mutex<Lru>,
    metrics: FrameMetrics,
}

/// The cache's counters, looked up once per session rather than once per
/// frame (its bytes gauge is kept with the bytes, in [`Lru`]).
struct FrameMetrics {
    hits: metrics::Counter,
    built: metrics::Counter,
}

struct Lru {
    entries: HashMap<Key, (Utf8Bytes, u64)>,
    /// Keys by when they were last used.
    order: BTreeMap<u64, Key>,
    bytes: usize,
    bound: usize,
    clock: u64,
    gauge: metrics::Gauge,
}

impl Frames {
    /// At most `bound` bytes of frames (0: every frame is built for itself).
    pub fn new(bound: usize) -> Frames {
        let metrics = FrameMetrics {
            hits: metrics::counter!(names::FRAME_CACHE_HITS),
            built: metrics::counter!(names::FRAMES_BUILT),
        };
        let lru = Lru {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            bytes: 0,
            bound,
            clock: 0,
            gauge: metrics::gauge!(names::FRAME_CACHE_BYTES),
        };
        Frames {
            inner: Mutex::new(lru),
            metrics,
        }
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("frames lock").bytes
    }

    /// The frame of `events` (contiguous, in seq order) in `encoding`: the
    /// one another subscriber built, or built now with `build` and kept.
    /// While the session has one subscriber on this node (its feed holds
    /// one reference to the frames, the subscriber the other) nothing is
    /// kept: there is nobody to share with, and keeping was 3 % of an edge's
    /// CPU (BENCHMARKS.md). A subscriber that joins later and is behind
    /// encodes what it needs, byte for byte the same.
    pub fn get(
        self: &Arc<Self>,
        encoding: Encoding,
        events: &[RawEvent],
        build: impl FnOnce(&[RawEvent]) -> String,
    ) -> Utf8Bytes {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Utf8Bytes::from(build(events));
        };
        if Arc::strong_count(self) <= ALONE {
            self.metrics.built.increment(1);
            return Utf8Bytes::from(build(events));
        }
        let key = (encoding, first.seq, last.seq);
        if let Some(hit) = self.inner.lock().expect("frames lock").hit(&key) {
            self.metrics.hits.increment(1);
            return hit;
        }
        // Built outside the lock: a subscriber that builds a large frame
        // keeps no other from taking one.
        let frame = Utf8Bytes::from(build(events));
        self.metrics.built.increment(1);
        self.inner
            .lock()
            .expect("frames lock")
            .insert(key, frame.clone());
        frame
    }
}

impl Lru {
    fn hit(&mut self, key: &Key) -> Option<Utf8Bytes> {
        self.clock += 1;
        let (frame, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = self.clock;
        self.order.insert(self.clock, *key);
        Some(frame.clone())
    }

    fn insert(&mut self, key: Key, frame: Utf8Bytes) {
        let len = frame.len();
        if len > self.bound || self.entries.contains_key(&key) {
            return; // too large to keep, or another built it meanwhile
        }
        let before = self.bytes;
        self.clock += 1;
        self.entries.insert(key, (frame, self.clock));
        self.order.insert(self.clock, key);
        self.bytes += len;
        while self.bytes > self.bound {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((gone, _)) = self.entries.remove(&oldest) {
                self.bytes -= gone.len();
            }
        }
        self.gauge.increment(self.bytes as f64 - before as f64);
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        let lru = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        lru.gauge.decrement(lru.bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::frame::events_frame;
    use weir_protocol::Event;

    fn evs(seqs: std::ops::RangeInclusive<u64>) -> Vec<RawEvent> {
        // One `ts` for all, so that events of one seq width are one length.
        seqs.map(|s| {
            let ev = Event::new(s, "token", None, serde_json::json!({"text": "ab"}));
            Event {
                ts: 1_764_072_000_123.0,
                ..ev
            }
            .to_raw()
        })
        .collect()
    }

    #[test]
    fn a_batch_is_a_window_on_a_shared_block() {
        let mut b = Batch::new(evs(1..=5));
        let head = b.split_to(2);
        assert_eq!(head.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(b.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert!(std::ptr::eq(&head[1], &b.block.as_ref().unwrap()[1]));
        assert_eq!(b.split_to(10).len(), 3);
        assert!(b.is_empty() && Batch::default().is_empty());
    }

    #[test]
    fn frames_are_cut_at_fixed_seqs_and_within_their_byte_bound() {
        assert_eq!(frame_room(0, 256), 256);
        assert_eq!(frame_room(40, 256), 216);
        assert_eq!(frame_room(256, 256), 256);
        let e = evs(1..=10);
        // (Events' lengths differ with their `ts`: count the real bytes.)
        let three: usize = e[..3].iter().map(|ev| ev.json.len() + 1).sum();
        assert_eq!(frame_len(&e, 10, three), 3);
        assert_eq!(frame_len(&e, 10, three - 1), 2);
        assert_eq!(frame_len(&e, 2, three), 2);
        assert_eq!(frame_len(&e, 10, 1), 1, "one event always fits");
    }

    #[test]
    fn a_frame_is_built_once_and_its_bytes_shared_until_evicted() {
        let e = evs(1..=4);
        let frames = Arc::new(Frames::new(3 * events_frame(&e[..2]).len()));
        let (_feed, _other) = (frames.clone(), frames.clone()); // two subscribers
        let built = std::cell::Cell::new(0);
        let get = |r: Range<usize>| {
            frames.get(Encoding::Ws, &e[r], |evs| {
                built.set(built.get() + 1);
                events_frame(evs)
            })
        };
        let a = get(0..2);
        let b = get(0..2);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, not a copy");
        assert_eq!(a.as_str(), events_frame(&e[..2]));
        get(2..4);
        get(1..3);
        get(0..2); // the most recent again
        get(0..1); // over the bound: 2..4 was used least recently
        assert_eq!(built.get(), 4);
        get(2..4);
        assert_eq!(built.get(), 5, "an evicted frame is built again");
        assert!(frames.bytes() <= 3 * events_frame(&e[..2]).len());
        let sse = frames.get(Encoding::Sse, &e[0..2], |_| "other".into());
        assert_eq!(sse.as_str(), "other", "encodings are kept apart");
    }

    #[test]
    fn a_lone_subscriber_keeps_no_frames_until_another_joins() {
        let e = evs(1..=4);
        let frames = Arc::new(Frames::new(1 << 20));
        let feed = frames.clone();
        let built = std::cell::Cell::new(0);
        let get = |frames: &Arc<Frames>| {
            frames.get(Encoding::Ws, &e[0..2], |evs| {
                built.set(built.get() + 1);
                events_frame(evs)
            })
        };
        let (a, b) = (get(&frames), get(&frames));
        assert_eq!(a, b, "the same bytes either way");
        assert_eq!((built.get(), frames.bytes()), (2, 0), "nothing kept");
        let other = feed.clone();
        let c = get(&frames);
        assert_eq!((get(&other).as_ptr(), built.get()), (c.as_ptr(), 3));
        assert!(frames.bytes() > 0);
    }
}
