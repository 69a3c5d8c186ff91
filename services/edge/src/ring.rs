//! The newest events of a session on this node: a bounded ring of the
//! blocks they came in, always a contiguous run of seqs, that the session's
//! subscribers read at their own pace (see [`crate::hub`]).

use std::collections::VecDeque;
use std::sync::Arc;

use weir_protocol::RawEvent;

use crate::frames::Batch;

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
