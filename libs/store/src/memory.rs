//! Session state in one process, with the Redis store's semantics.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use weir_protocol::{ControlOp, SessionId, Status};

use crate::{unix_ms, Page, SessionState, SessionStore, StoreError, Update};

mod threads;

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, (SessionState, Instant)>,
    threads: HashMap<weir_protocol::ThreadId, (threads::Kept, Instant)>,
    /// Index entries (`<created>:<id>`) of every session, and by status.
    index: BTreeSet<String>,
    by_status: HashMap<Status, BTreeSet<String>>,
}

pub struct MemoryStore {
    retention: Duration,
    inner: Mutex<Inner>,
    /// It is never unreachable: up since it was made.
    started: Instant,
}

impl MemoryStore {
    /// Sessions expire `retention` after their last update.
    pub fn new(retention: Duration) -> MemoryStore {
        MemoryStore {
            retention,
            inner: Mutex::default(),
            started: Instant::now(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner, Instant) -> T) -> T {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("store lock");
        inner.sessions.retain(|_, (_, until)| *until > now);
        inner.threads.retain(|_, (_, until)| *until > now);
        f(&mut inner, now)
    }

    fn live<'a>(inner: &'a mut Inner, id: &SessionId) -> Option<&'a mut (SessionState, Instant)> {
        inner.sessions.get_mut(id)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| {
            if inner.sessions.contains_key(&state.id) {
                return false;
            }
            inner
                .sessions
                .insert(state.id.clone(), (state.clone(), now + self.retention));
            let entry = state.index_entry();
            inner.index.insert(entry.clone());
            inner
                .by_status
                .entry(state.status)
                .or_default()
                .insert(entry);
            true
        }))
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        Ok(self.with(|inner, _| inner.sessions.get(id).map(|(s, _)| s.clone())))
    }

    async fn update(&self, id: &SessionId, update: Update) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| {
            let Some((state, until)) = Self::live(inner, id) else {
                return false;
            };
            let ended = state.status.is_ended();
            let moved = match (update.status, ended) {
                (Some(status), false) if status != state.status => {
                    Some((std::mem::replace(&mut state.status, status), status))
                }
                _ => None,
            };
            let entry = state.index_entry();
            if let (Some(reason), false) = (update.end_reason, ended) {
                state.end_reason = Some(reason);
            }
            if let Some(seq) = update.last_seq {
                state.last_seq = state.last_seq.max(seq);
            }
            // An ended session has no owner, even if a late write names one.
            if let Some(producer) = update.producer.filter(|p| p.is_none() || !ended) {
                state.producer = producer;
            }
            state.updated = unix_ms();
            *until = now + self.retention;
            if let Some((from, to)) = moved {
                if let Some(set) = inner.by_status.get_mut(&from) {
                    set.remove(&entry);
                }
                inner.by_status.entry(to).or_default().insert(entry);
            }
            true
        }))
    }

    async fn list(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        Ok(self.with(|inner, now| {
            let empty = BTreeSet::new();
            let set = match status {
                Some(s) => inner.by_status.get(&s).unwrap_or(&empty),
                None => &inner.index,
            };
            let entries: Vec<String> = match cursor {
                Some(c) => set
                    .range(..c.to_owned())
                    .rev()
                    .take(limit)
                    .cloned()
                    .collect(),
                None => set.iter().rev().take(limit).cloned().collect(),
            };
            let sessions = entries
                .iter()
                .filter_map(|e| {
                    e.split_once(':')
                        .and_then(|(_, id)| SessionId::parse(id).ok())
                })
                .filter_map(|id| inner.sessions.get(&id).filter(|(_, until)| *until > now))
                .map(|(s, _)| s.clone())
                .collect();
            let next_cursor = (entries.len() == limit)
                .then(|| entries.last().cloned())
                .flatten();
            Page {
                sessions,
                next_cursor,
            }
        }))
    }

    async fn ack(&self, id: &SessionId, seq: u64) -> Result<(), StoreError> {
        self.with(|inner, _| {
            if let Some((state, _)) = Self::live(inner, id) {
                state.acked = state.acked.max(seq);
            }
        });
        Ok(())
    }

    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError> {
        self.with(|inner, _| {
            if let Some((state, _)) = Self::live(inner, id) {
                state.control = Some(op);
            }
        });
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn up_since(&self) -> Option<Instant> {
        Some(self.started)
    }
}
