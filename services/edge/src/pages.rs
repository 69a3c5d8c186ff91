//! A session's log pages, shared by the subscribers of that session on one
//! node. A page read from the log for one subscriber that is behind the
//! ring serves every other subscriber whose cursor falls inside it, so a
//! crowd reading the same stretch of the log reads it once and holds it
//! once: what a subscriber takes from a page is a [`Batch`] of it, a
//! refcount, not a copy of the events or their bytes.
//!
//! The cache is bounded in bytes; over the bound it drops the pages used
//! least recently. Nobody holds a page for the others: a subscriber's batch
//! keeps the page's events alive only while they sit in its own connection
//! buffer, never keeps the page in the cache, and one that comes back to an
//! evicted stretch reads it from the log again.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_protocol::RawEvent;
use weir_telemetry::names;

use crate::frames::Batch;

/// What an event costs the cache: its JSON and its own struct.
fn cost(ev: &RawEvent) -> usize {
    ev.json.len() + std::mem::size_of::<RawEvent>()
}

pub struct PageCache {
    /// By first seq; each page a contiguous run of seqs.
    pages: BTreeMap<u64, Page>,
    bytes: usize,
    bound: usize,
    /// Counts reads, to find the page used least recently.
    clock: u64,
}

struct Page {
    events: Arc<[RawEvent]>,
    bytes: usize,
    used: u64,
}

impl Page {
    fn last_seq(&self) -> u64 {
        self.events.last().map_or(0, |e| e.seq)
    }
}

impl PageCache {
    /// At most `bound` bytes of events (0: keep nothing).
    pub fn new(bound: usize) -> PageCache {
        PageCache {
            pages: BTreeMap::new(),
            bytes: 0,
            bound,
            clock: 0,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Up to `max` events from `cursor + 1` on, if a page holds that seq.
    pub fn read(&mut self, cursor: u64, max: usize) -> Option<Batch> {
        let want = cursor + 1;
        self.clock += 1;
        let (&first, page) = self.pages.range_mut(..=want).next_back()?;
        if page.last_seq() < want {
            return None;
        }
        page.used = self.clock;
        let start = (want - first) as usize;
        Some(Batch::slice(&page.events, start..start + max.max(1)))
    }

    /// Keeps a page just read from the log (contiguous seqs), then drops the
    /// pages used least recently until the cache is within its bound. A page
    /// larger than the whole bound is not kept.
    pub fn insert(&mut self, events: &Arc<[RawEvent]>) {
        let Some(first) = events.first().map(|e| e.seq) else {
            return;
        };
        let bytes: usize = events.iter().map(cost).sum();
        if bytes > self.bound {
            return;
        }
        self.clock += 1;
        let page = Page {
            events: events.clone(),
            bytes,
            used: self.clock,
        };
        let before = self.bytes;
        if let Some(old) = self.pages.insert(first, page) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        while self.bytes > self.bound {
            let Some((&oldest, _)) = self.pages.iter().min_by_key(|(_, p)| p.used) else {
                break;
            };
            let gone = self.pages.remove(&oldest).expect("just found");
            self.bytes -= gone.bytes;
            metrics::counter!(names::LOG_CACHE_EVICTIONS).increment(1);
        }
        let gauge = metrics::gauge!(names::LOG_CACHE_BYTES);
        gauge.increment(self.bytes as f64 - before as f64);
    }
}

impl Drop for PageCache {
    fn drop(&mut self) {
        metrics::gauge!(names::LOG_CACHE_BYTES).decrement(self.bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_protocol::Event;

    fn evs(seqs: std::ops::RangeInclusive<u64>) -> Arc<[RawEvent]> {
        seqs.map(|s| {
            let mut e = Event::new(s, "token", None, serde_json::json!({}));
            e.ts = 1.0; // the same size every time
            e.to_raw()
        })
        .collect()
    }

    fn seqs(r: Option<Batch>) -> Vec<u64> {
        r.expect("a hit").iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_page_serves_any_cursor_inside_it() {
        let mut cache = PageCache::new(1 << 20);
        assert!(cache.read(0, 10).is_none());
        cache.insert(&evs(1..=10));
        cache.insert(&evs(11..=20));
        assert_eq!(seqs(cache.read(0, 3)), vec![1, 2, 3]);
        assert_eq!(seqs(cache.read(7, 10)), vec![8, 9, 10]); // never past a page
        assert_eq!(seqs(cache.read(10, 2)), vec![11, 12]);
        assert!(cache.read(20, 10).is_none());
        // A page shares its events: no copy of them or their JSON.
        let a = cache.read(0, 1).unwrap();
        let b = cache.read(0, 1).unwrap();
        assert!(std::ptr::eq(&a[0], &b[0]));
    }

    #[test]
    fn over_the_bound_the_least_recently_used_pages_go() {
        let size = |r| evs(r).iter().map(cost).sum::<usize>();
        let bound = size(1..=10) + size(11..=20);
        let mut cache = PageCache::new(bound);
        cache.insert(&evs(1..=10));
        cache.insert(&evs(11..=20));
        assert_eq!(cache.bytes(), bound);
        assert!(cache.read(0, 1).is_some()); // 1..=10 is now the most recent
        cache.insert(&evs(21..=30));
        assert!(cache.bytes() <= bound);
        assert!(
            cache.read(10, 1).is_none(),
            "11..=20 was used least recently"
        );
        assert!(cache.read(0, 1).is_some());
        assert!(cache.read(20, 1).is_some());
        // A page over the whole bound is not kept, and evicts nothing.
        cache.insert(&evs(31..=60));
        assert!(cache.read(30, 1).is_none());
        assert!(cache.read(0, 1).is_some());
        assert_eq!(PageCache::new(0).bytes(), 0);
    }
}
