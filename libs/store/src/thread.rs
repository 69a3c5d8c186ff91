//! Threads (protocol.md §9): a conversation with one agent and its runs, in
//! order. A run is a session; what the store keeps of it here is what the
//! front ends need after the run started — its input `messages` and
//! `tools`, the assistant `message_id` it continues, and the client run ids
//! (AG-UI's `runId`s, "aliases") that name it.
//!
//! The store does not decide whether a run has ended: the log does (its
//! `end` event), and the store may lag behind it. Starting a run is
//! therefore a compare-and-set ([`ThreadStore::start_run`]): the caller reads
//! the thread's latest run, checks in the log that it ended, and starts the
//! next one only if the latest is still the one it checked. Two starts at
//! once cannot both win, and a run that ended frees its thread whether or not
//! its end was recorded in the store.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weir_protocol::{SessionId, ThreadId};

use crate::StoreError;

/// What a thread is, fixed at its creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    pub id: ThreadId,
    pub agent: String,
    /// The defaults of every run's input (the run's own input wins, key by key).
    pub input: Map<String, Value>,
    /// Unix milliseconds.
    pub created: u64,
}

/// One run of a thread, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub session: SessionId,
    /// Unix milliseconds.
    pub created: u64,
    /// The conversation so far, as the run's input got it.
    pub messages: Vec<Value>,
    pub tools: Vec<Value>,
    /// The assistant message this run continues (AI SDK, §9), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// A run in a thread's list: its session and when it started.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEntry {
    pub session: SessionId,
    pub created: u64,
}

/// A thread and its runs, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadRecord {
    pub thread: Thread,
    pub runs: Vec<RunEntry>,
}

impl ThreadRecord {
    /// The newest run: the active one unless its log holds its end.
    pub fn latest(&self) -> Option<&SessionId> {
        self.runs.last().map(|r| &r.session)
    }
}

/// How [`ThreadStore::start_run`] went.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    Started,
    /// The thread's latest run is not the one the caller expected (another
    /// start won): it is this one.
    Moved(Option<SessionId>),
    /// No such thread (never created, or expired).
    NoThread,
}

#[async_trait]
pub trait ThreadStore: Send + Sync + 'static {
    /// Stores a new thread; false if the id is taken.
    async fn create_thread(&self, thread: &Thread) -> Result<bool, StoreError>;

    async fn get_thread(&self, id: &ThreadId) -> Result<Option<ThreadRecord>, StoreError>;

    /// One atomic step: if the thread's latest run is `after` (`None`: it
    /// has none), appends `run` and, with `alias`, names it by that client
    /// run id. Every key of the thread lives on for the retention from now.
    async fn start_run(
        &self,
        thread: &ThreadId,
        after: Option<&SessionId>,
        run: &RunRecord,
        alias: Option<&str>,
    ) -> Result<Started, StoreError>;

    /// Takes back a run whose request could not be queued, while it is the
    /// thread's latest: the thread is free again. False if it is not.
    async fn withdraw_run(&self, thread: &ThreadId, run: &SessionId) -> Result<bool, StoreError>;

    /// The run record of one of the thread's runs.
    async fn get_run(
        &self,
        thread: &ThreadId,
        run: &SessionId,
    ) -> Result<Option<RunRecord>, StoreError>;

    /// Names one of the thread's runs by a client run id as well; false if
    /// the alias already names another run (or there is no such thread).
    async fn add_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
        run: &SessionId,
    ) -> Result<bool, StoreError>;

    /// The run a client run id names.
    async fn find_alias(
        &self,
        thread: &ThreadId,
        alias: &str,
    ) -> Result<Option<SessionId>, StoreError>;
}
