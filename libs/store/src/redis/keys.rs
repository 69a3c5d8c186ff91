//! The key layout: every session belongs to one of [`BUCKETS`] buckets,
//! and each bucket's keys share a hash tag (`weir:{b07}:…`), hence a Redis
//! Cluster slot. A session's state and the bucket's indexes are in one
//! slot, so every script touches one slot and stays atomic; what spans
//! sessions (the index) is read bucket by bucket and merged.

use weir_protocol::{SessionId, Status, ThreadId};

/// How many buckets the sessions are spread over: the number of slots (so
/// of cluster masters) that share the writes, and the number of reads a
/// listing merges.
pub const BUCKETS: u16 = 32;

/// Every status, in the order the scripts receive their index keys.
pub const STATUSES: [Status; 7] = [
    Status::Queued,
    Status::Streaming,
    Status::Paused,
    Status::InputRequired,
    Status::Completed,
    Status::Cancelled,
    Status::Failed,
];

/// One bucket of sessions: a hash tag, so one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bucket(u16);

impl Bucket {
    /// The bucket a session is in: FNV-1a of its id, so the same on every
    /// node and every release.
    pub fn of(id: &SessionId) -> Bucket {
        Bucket::of_name(id.as_str())
    }

    /// The bucket of a thread: the same hash of its id, so a thread's keys
    /// share one slot (as a session's do).
    pub fn of_thread(id: &ThreadId) -> Bucket {
        Bucket::of_name(id.as_str())
    }

    fn of_name(name: &str) -> Bucket {
        let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        Bucket((hash % u32::from(BUCKETS)) as u16)
    }

    pub fn all() -> impl Iterator<Item = Bucket> {
        (0..BUCKETS).map(Bucket)
    }

    fn prefix(self) -> String {
        format!("weir:{{b{:02}}}", self.0)
    }

    /// The bucket's index of every session, or of those in `status`.
    pub fn index(self, status: Option<Status>) -> String {
        match status {
            None => format!("{}:idx", self.prefix()),
            Some(s) => format!("{}:idx:{}", self.prefix(), s.as_str()),
        }
    }

    /// The index keys a script that moves entries receives: every session's,
    /// then one per status in [`STATUSES`] order.
    pub fn index_keys(self) -> Vec<String> {
        std::iter::once(self.index(None))
            .chain(STATUSES.iter().map(|s| self.index(Some(*s))))
            .collect()
    }
}

pub fn state(id: &SessionId) -> String {
    format!("{}:s:{id}", Bucket::of(id).prefix())
}

/// A thread's keys, in the order its scripts receive them: the thread
/// (hash), its runs (list of `<created ms, 13 digits>:<session>`), its
/// aliases (hash: client run id → session).
pub fn thread(id: &ThreadId) -> [String; 3] {
    let t = format!("{}:t:{id}", Bucket::of_thread(id).prefix());
    [t.clone(), format!("{t}:runs"), format!("{t}:alias")]
}

/// One run's record (JSON), in its thread's slot.
pub fn thread_run(id: &ThreadId, run: &SessionId) -> String {
    format!("{}:t:{id}:r:{run}", Bucket::of_thread(id).prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster's slot of a key (CRC16/XMODEM of its hash tag, mod 16384).
    fn slot(key: &str) -> u16 {
        let tag = match (key.find('{'), key.find('}')) {
            (Some(open), Some(close)) if close > open + 1 => &key[open + 1..close],
            _ => key,
        };
        let crc = tag.bytes().fold(0u16, |mut crc, b| {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
            crc
        });
        crc % 16384
    }

    #[test]
    fn a_sessions_keys_and_its_buckets_indexes_share_one_slot() {
        for n in 0..200 {
            let id = SessionId::parse(&format!("s-{n}")).unwrap();
            let b = Bucket::of(&id);
            let mut keys = vec![state(&id)];
            keys.extend(b.index_keys());
            let slots: Vec<u16> = keys.iter().map(|k| slot(k)).collect();
            assert!(slots.iter().all(|s| *s == slots[0]), "{keys:?} {slots:?}");
        }
    }

    #[test]
    fn a_threads_keys_share_one_slot() {
        for n in 0..200 {
            let t = ThreadId::parse(&format!("t-{n}")).unwrap();
            let run = SessionId::parse(&format!("s-{n}")).unwrap();
            let mut keys = thread(&t).to_vec();
            keys.push(thread_run(&t, &run));
            let slots: Vec<u16> = keys.iter().map(|k| slot(k)).collect();
            assert!(slots.iter().all(|s| *s == slots[0]), "{keys:?} {slots:?}");
        }
    }

    #[test]
    fn sessions_spread_over_every_bucket_and_buckets_over_distinct_slots() {
        let mut used = std::collections::BTreeSet::new();
        for n in 0..2000 {
            used.insert(Bucket::of(&SessionId::parse(&format!("s{n}")).unwrap()));
        }
        assert_eq!(used.len(), BUCKETS as usize);
        let slots: std::collections::BTreeSet<u16> =
            Bucket::all().map(|b| slot(&b.index(None))).collect();
        assert_eq!(slots.len(), BUCKETS as usize, "two buckets share a slot");
    }

    #[test]
    fn every_status_has_its_index() {
        // A new status fails to compile here until it is added to STATUSES
        // (the scripts receive one index key per entry).
        let place = |s: Status| match s {
            Status::Queued => 0,
            Status::Streaming => 1,
            Status::Paused => 2,
            Status::InputRequired => 3,
            Status::Completed => 4,
            Status::Cancelled => 5,
            Status::Failed => 6,
        };
        for (i, s) in STATUSES.iter().enumerate() {
            assert_eq!(place(*s), i, "{s:?}");
        }
    }

    #[test]
    fn the_bucket_of_an_id_never_changes() {
        // Changing it would orphan every stored session: pinned here.
        let id = SessionId::parse("abc").unwrap();
        assert_eq!(
            state(&id),
            format!("weir:{{b{:02}}}:s:abc", Bucket::of(&id).0)
        );
        assert_eq!(Bucket::of(&id), Bucket((0x1a47_e90b_u32 % 32) as u16));
    }
}
