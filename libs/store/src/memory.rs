//! Session state in one process, with the Redis store's semantics.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use weir_protocol::{ControlOp, SessionId};

use crate::{unix_ms, SessionState, SessionStore, StoreError, Update};

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, (SessionState, Instant)>,
    /// id → (owner, lease deadline)
    leases: HashMap<SessionId, (String, Instant)>,
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
            if let (Some(status), false) = (update.status, ended) {
                state.status = status;
            }
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
            true
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

    async fn acquire_lease(
        &self,
        id: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| {
            if inner.leases.get(id).is_some_and(|(_, until)| *until > now) {
                return false;
            }
            inner
                .leases
                .insert(id.clone(), (owner.to_owned(), now + ttl));
            true
        }))
    }

    async fn renew_lease(
        &self,
        id: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|inner, now| match inner.leases.get(id) {
            Some((o, until)) if o != owner && *until > now => false,
            // Ours, or free (lapsed or lost): extended or taken back.
            _ => {
                inner
                    .leases
                    .insert(id.clone(), (owner.to_owned(), now + ttl));
                true
            }
        }))
    }

    async fn release_lease(&self, id: &SessionId, owner: &str) -> Result<(), StoreError> {
        self.with(|inner, _| {
            if inner.leases.get(id).is_some_and(|(o, _)| o == owner) {
                inner.leases.remove(id);
            }
        });
        Ok(())
    }

    async fn expired_leases(&self, limit: usize) -> Result<Vec<SessionId>, StoreError> {
        Ok(self.with(|inner, now| {
            inner
                .leases
                .iter()
                .filter(|(_, (_, until))| *until <= now)
                .map(|(id, _)| id.clone())
                .take(limit)
                .collect()
        }))
    }

    async fn forget_lease(&self, id: &SessionId) -> Result<(), StoreError> {
        self.with(|inner, _| inner.leases.remove(id));
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn up_since(&self) -> Option<Instant> {
        Some(self.started)
    }
}
