//! Session state: what a node needs to serve a session it has never seen —
//! status, agent, times, last published seq, end reason, the producer that
//! owns the run with its lease, the client's acknowledged seq and the last
//! control op asked for.
//!
//! [`SessionStore`] is the seam; [`redis`] is the real implementation (key
//! layout in its module docs), [`memory`] the in-process one with the same
//! semantics (expiry, leases, monotonic cursors, ended is final), and
//! [`conformance`] the checks both pass.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use weir_protocol::{ControlOp, EndReason, SessionId, Status};

pub mod conformance;
pub mod memory;
pub mod redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt session state: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn unavailable(e: impl std::fmt::Display) -> StoreError {
        metrics::counter!(weir_telemetry::names::STORE_ERRORS).increment(1);
        StoreError::Unavailable(e.to_string())
    }
}

/// One session's state, as `GET /v1/sessions/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionState {
    pub id: SessionId,
    pub status: Status,
    pub agent: String,
    /// Unix milliseconds.
    pub created: u64,
    pub updated: u64,
    pub last_seq: u64,
    pub end_reason: Option<EndReason>,
    /// Node id of the producer that owns the run, while one does.
    pub producer: Option<String>,
    /// The highest seq a client acknowledged.
    pub acked: u64,
    /// The last control op asked for (a producer starting late obeys it).
    pub control: Option<ControlOp>,
}

impl SessionState {
    pub fn new(id: SessionId, agent: &str) -> SessionState {
        let now = unix_ms();
        SessionState {
            id,
            status: Status::Queued,
            agent: agent.to_owned(),
            created: now,
            updated: now,
            last_seq: 0,
            end_reason: None,
            producer: None,
            acked: 0,
            control: None,
        }
    }
}

/// A change to a session's state. Fields left `None` stay as they are; a
/// session that has ended keeps its status and end reason; `last_seq` only
/// grows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub status: Option<Status>,
    pub last_seq: Option<u64>,
    pub end_reason: Option<EndReason>,
    /// `Some(None)` clears the producer.
    pub producer: Option<Option<String>>,
}

impl Update {
    pub fn status(status: Status) -> Update {
        Update {
            status: Some(status),
            ..Update::default()
        }
    }

    pub fn ended(reason: EndReason, last_seq: u64) -> Update {
        Update {
            status: Some(reason.status()),
            end_reason: Some(reason),
            last_seq: Some(last_seq),
            producer: Some(None),
        }
    }
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session; false if the id is taken.
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError>;
    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError>;
    /// Applies an update; false if the session is unknown (expired).
    async fn update(&self, id: &SessionId, update: Update) -> Result<bool, StoreError>;
    /// Records a client acknowledgement (kept only if higher).
    async fn ack(&self, id: &SessionId, seq: u64) -> Result<(), StoreError>;
    /// Records the control op a client asked for.
    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError>;
    /// Takes the run's lease if nobody holds it.
    async fn acquire_lease(
        &self,
        id: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Extends the lease if `owner` still holds it.
    async fn renew_lease(
        &self,
        id: &SessionId,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;
    /// Gives the lease up if `owner` holds it.
    async fn release_lease(&self, id: &SessionId, owner: &str) -> Result<(), StoreError>;
    /// Sessions whose lease ran out without being released: their producer died.
    async fn expired_leases(&self, limit: usize) -> Result<Vec<SessionId>, StoreError>;
    /// Forgets a lease that needs no reaping (the session is gone or ended).
    async fn forget_lease(&self, id: &SessionId) -> Result<(), StoreError>;
    /// Ok while the store can be reached.
    async fn ping(&self) -> Result<(), StoreError>;
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
