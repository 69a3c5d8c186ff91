//! Session state: what a node needs to serve a session it has never seen —
//! status, agent, times, last published seq, end reason, the producer that
//! owns the run, the client's acknowledged seq and the last control op
//! asked for. (Leases are on the bus: `weir_bus::lease`.) Threads of runs
//! (protocol.md §9) are kept by the same store: [`thread`].
//!
//! [`SessionStore`] is the seam; [`redis`] is the real implementation for
//! one server, Sentinel or Cluster (key layout in its module docs), [`memory`]
//! the in-process one with the same semantics (expiry, monotonic cursors,
//! ended is final), and
//! [`conformance`] the checks both pass. [`health`] tracks whether the store
//! can be reached, so that an outage is logged once and callers fall back on
//! the log (the truth) without waiting.

use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;
use weir_protocol::{ControlOp, EndReason, RunRequest, SessionId, Status, ThreadId};

pub mod conformance;
pub mod health;
pub mod memory;
pub mod redis;
pub mod thread;

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use thread::{RunEntry, RunRecord, Started, Thread, ThreadRecord, ThreadStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt session state: {0}")]
    Corrupt(String),
    /// `WEIR_REDIS_URL` is none of the accepted forms (the message names them).
    #[error("{0}")]
    BadUrl(String),
}

impl StoreError {
    pub fn unavailable(e: impl std::fmt::Display) -> StoreError {
        metrics::counter!(weir_telemetry::names::STORE_ERRORS).increment(1);
        StoreError::Unavailable(e.to_string())
    }

    /// True when the store could not be reached (rather than its state
    /// being corrupt).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
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
    /// Fields this state cannot know, when it was rebuilt from the log after
    /// the store lost it or while the store is unreachable (e.g. `agent`):
    /// they hold defaults or guesses. Empty (and not shown) otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// Events per second each client receives at most (`"pace"` at creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pace: Option<u32>,
    /// The thread this session is a run of (protocol.md §9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<ThreadId>,
    /// The creation this state was written for (`RunRequest::nonce`): it
    /// tells the edge that created the session from another creation of
    /// the same id. Not shown.
    #[serde(skip)]
    pub nonce: Option<String>,
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
            unknown: Vec::new(),
            pace: None,
            thread: None,
            nonce: None,
        }
    }

    /// This session's place in the index: `<created, 13 digits>:<id>`, so
    /// that ordering the entries as strings orders them by creation.
    pub fn index_entry(&self) -> String {
        index_entry(self.created, &self.id)
    }

    /// True when some fields are not known (see [`SessionState::unknown`]).
    pub fn is_partial(&self) -> bool {
        !self.unknown.is_empty()
    }

    /// The run request of this new session, carrying all of the state it
    /// starts with, so that [`SessionState::of_request`] gives it back.
    pub fn run_request(&self, input: serde_json::Value) -> RunRequest {
        RunRequest {
            session: self.id.clone(),
            agent: self.agent.clone(),
            input,
            thread: self.thread.clone(),
            created: Some(self.created),
            pace: self.pace,
            nonce: self.nonce.clone(),
        }
    }

    /// The state a run request was created with: exactly what its edge
    /// wrote when the request carries its creation (its `created`); for an
    /// older edge's request, a state whose creation time and control op are
    /// unknown.
    pub fn of_request(req: &RunRequest) -> SessionState {
        let mut state = SessionState::new(req.session.clone(), &req.agent);
        state.thread = req.thread.clone();
        state.pace = req.pace;
        state.nonce = req.nonce.clone();
        match req.created {
            Some(created) => (state.created, state.updated) = (created, created),
            None => state.unknown = vec!["created".into(), "control".into()],
        }
        state
    }

    /// Whether this state was written for another creation than `req`'s:
    /// both name theirs, and the names differ. A state rebuilt from the log
    /// (partial) names none that could be trusted, and is not.
    pub fn is_other_creation(&self, req: &RunRequest) -> bool {
        match &req.nonce {
            Some(nonce) => !self.is_partial() && self.nonce.as_ref() != Some(nonce),
            None => false,
        }
    }
}

/// A change to a session's state. Fields left `None` stay as they are; a
/// session that has ended keeps its status and end reason and gets no new
/// producer (a write that was delayed by an outage may arrive late);
/// `last_seq` only grows.
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

    /// This update followed by `later`, as one: what `later` sets wins,
    /// `last_seq` keeps the higher. Lets a writer coalesce changes it could
    /// not store yet without reordering them.
    pub fn then(self, later: Update) -> Update {
        Update {
            status: later.status.or(self.status),
            last_seq: self.last_seq.max(later.last_seq),
            end_reason: later.end_reason.or(self.end_reason),
            producer: later.producer.or(self.producer),
        }
    }
}

/// Sessions, and the threads whose runs they are ([`ThreadStore`]): one
/// store, so that one connection and one outage cover both.
#[async_trait]
pub trait SessionStore: ThreadStore {
    /// Stores a new session; false if the id is taken.
    async fn create(&self, state: &SessionState) -> Result<bool, StoreError>;
    async fn get(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError>;
    /// Sessions newest first (`status`: only those in it), up to `limit`
    /// index entries after `cursor`. Served from an index kept as sessions
    /// are created and change status; entries of expired sessions are
    /// dropped as they are met, so a page may hold fewer than `limit`.
    async fn list(
        &self,
        status: Option<Status>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError>;
    /// Applies an update; false if the session is unknown (expired).
    async fn update(&self, id: &SessionId, update: Update) -> Result<bool, StoreError>;
    /// Records a client acknowledgement (kept only if higher).
    async fn ack(&self, id: &SessionId, seq: u64) -> Result<(), StoreError>;
    /// Records the control op a client asked for.
    async fn request_control(&self, id: &SessionId, op: ControlOp) -> Result<(), StoreError>;
    /// Ok while the store can be reached.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Since when the store has been reachable without a break (from the
    /// start, or since its last outage ended); `None` while it is down.
    fn up_since(&self) -> Option<Instant>;
}

/// One page of the session index, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub sessions: Vec<SessionState>,
    /// Where the next page starts; `None` after the last.
    pub next_cursor: Option<String>,
}

/// An index entry (and cursor): creation time in ms, 13 digits, then the id.
pub fn index_entry(created: u64, id: &SessionId) -> String {
    format!("{created:013}:{id}")
}

/// Checks a cursor a client sent back: an index entry, nothing else.
pub fn parse_cursor(cursor: &str) -> Result<String, String> {
    let (ms, id) = cursor
        .split_once(':')
        .ok_or_else(|| format!("cursor {cursor:?} is not one this API gave"))?;
    if ms.len() != 13 || !ms.bytes().all(|b| b.is_ascii_digit()) || SessionId::parse(id).is_err() {
        return Err(format!("cursor {cursor:?} is not one this API gave"));
    }
    Ok(cursor.to_owned())
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesced_updates_keep_the_latest_fields_and_the_highest_seq() {
        let start = Update {
            status: Some(Status::Streaming),
            producer: Some(Some("p1".into())),
            last_seq: Some(5),
            ..Update::default()
        };
        let progress = Update {
            last_seq: Some(9),
            ..Update::default()
        };
        let both = start.clone().then(progress.clone());
        assert_eq!(both.status, Some(Status::Streaming));
        assert_eq!(both.producer, Some(Some("p1".into())));
        assert_eq!(both.last_seq, Some(9));
        let ended = both.then(Update::ended(EndReason::Completed, 7));
        assert_eq!(ended.status, Some(Status::Completed));
        assert_eq!(ended.producer, Some(None));
        assert_eq!(ended.last_seq, Some(9), "last_seq went down");
        assert_eq!(progress.then(Update::default()).last_seq, Some(9));
    }

    fn new_run_of_a_thread() -> SessionState {
        let mut s = SessionState::new(SessionId::parse("s1").unwrap(), "mock");
        s.created = 1_765_000_000_123;
        s.updated = s.created;
        s.pace = Some(20);
        s.thread = Some(ThreadId::parse("t1").unwrap());
        s.nonce = Some(weir_protocol::creation_nonce());
        s
    }

    #[test]
    fn a_run_request_gives_back_the_exact_state_its_session_was_created_with() {
        let s = new_run_of_a_thread();
        let req = s.run_request(serde_json::json!({"tokens": 3}));
        assert_eq!(req.input["tokens"], 3);
        assert_eq!(SessionState::of_request(&req), s);
    }

    #[test]
    fn an_older_edges_run_request_gives_a_state_without_its_creation_time() {
        let req = RunRequest::new(
            SessionId::parse("s1").unwrap(),
            "mock",
            serde_json::json!({}),
        );
        let s = SessionState::of_request(&req);
        assert_eq!((s.agent.as_str(), s.status), ("mock", Status::Queued));
        assert_eq!(s.unknown, ["created", "control"]);
    }

    #[test]
    fn only_a_state_naming_another_creation_is_anothers() {
        let s = new_run_of_a_thread();
        let req = s.run_request(serde_json::json!({}));
        assert!(!s.is_other_creation(&req));
        let mut other = s.clone();
        other.nonce = Some(weir_protocol::creation_nonce());
        assert!(other.is_other_creation(&req));
        other.nonce = None;
        assert!(
            other.is_other_creation(&req),
            "a state of no creation of ours"
        );
        other.unknown = vec!["created".into()];
        assert!(!other.is_other_creation(&req), "a rebuilt state names none");
        let older = RunRequest::new(s.id.clone(), "mock", serde_json::json!({}));
        assert!(!other.is_other_creation(&older));
    }
}
