//! The bus: each session's event log, the control channel to producers and
//! the queue of run requests, behind three small traits.
//!
//! - [`EventLog`]: append events (idempotent by message id, fenced so that two
//!   writers can never interleave), read a session's log from a seq, and
//!   follow it live. The log is the truth; live delivery is an optimisation
//!   that must give the same sequence.
//! - [`ControlChannel`]: pause/resume/cancel to whoever runs the session.
//! - [`RunQueue`]: run requests, one queue per agent shared by every worker
//!   of that agent, each request taken by one.
//! - [`LeaseTable`] ([`lease`]): who runs each session, renewed while it
//!   runs; a lease that lapses is taken over by a reaper.
//! - [`InputBox`] ([`input`]): answers to `input_request`s, recorded until
//!   the producer that asked takes them.
//! - [`NoticeChannel`] and [`NodeRegistry`] ([`operators`]): operators'
//!   broadcast notices, and the live nodes of the cluster.
//!
//! [`nats`] implements them on NATS JetStream (`WEIR_EVENTS`, `WEIR_RUNS`) and
//! core NATS (`weir.ctl.*`); [`memory`] implements the same semantics in one
//! process for the embedded mode and unit tests; [`conformance`] is the test
//! suite both must pass.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use weir_protocol::{ControlOp, EventError, RawEvent, RunRequest, SessionId};

pub mod conformance;
pub mod input;
pub mod lease;
pub mod memory;
pub mod nats;
pub mod operators;
mod reach;

pub use input::{InputBox, Put};
pub use lease::{Lease, LeaseChange, LeaseEntry, LeaseTable};
pub use operators::{NodeEntry, NodeRegistry, Notice, NoticeChannel};
pub use reach::{Reach, Timings, ELECTION};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// Another writer appended to the session since the fence was taken.
    #[error("fenced: the session's log moved on under this writer")]
    Fenced,
    #[error("malformed message on the bus: {0}")]
    BadMessage(#[from] EventError),
    /// The server or the cluster cannot run weir as configured (too old a
    /// release, a stream that cannot take the asked replica count, a bad URL).
    #[error("{0}")]
    Unsupported(String),
}

impl BusError {
    pub fn unavailable(e: impl std::fmt::Display) -> BusError {
        BusError::Unavailable(e.to_string())
    }
}

/// The position of a session's last message in the log, as the log counts
/// it. An append names the fence it expects; a writer that lost the session
/// to another finds its fence stale and stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence(pub u64);

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The fence for the next append.
    pub fence: Fence,
    /// The log already held this message (a retried append); nothing was added.
    pub duplicate: bool,
}

/// The last event a session's log holds, with the fence to append after it.
#[derive(Debug, Clone)]
pub struct LastEvent {
    pub event: RawEvent,
    pub fence: Fence,
}

/// Batches of events as they are appended to one session.
pub type EventStream = BoxStream<'static, Result<Vec<RawEvent>, BusError>>;

/// Message id of a batch: `<session>:<seq>` or `<session>:<first>-<last>`.
pub fn msg_id(session: &SessionId, events: &[RawEvent]) -> String {
    match events {
        [one] => format!("{session}:{}", one.seq),
        [first, .., last] => format!("{session}:{}-{}", first.seq, last.seq),
        [] => format!("{session}:empty"),
    }
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends one message (one event, or a batch with contiguous seqs) if the
    /// session's last message is still at `fence` (`Fence(0)`: the log holds
    /// nothing of the session). Appending the same message again is a no-op
    /// reported as `duplicate`.
    async fn append(
        &self,
        session: &SessionId,
        events: &[RawEvent],
        fence: Fence,
    ) -> Result<Appended, BusError>;

    /// The last event of the session in the log, if it holds any, as the
    /// stream's leader has it: what a write's fence is taken from.
    async fn last(&self, session: &SessionId) -> Result<Option<LastEvent>, BusError>;

    /// [`EventLog::last`] as any replica has it: cheaper, and a moment
    /// behind the leader at worst (an older event or none, never a wrong
    /// one). For reads that only learn where a session stands.
    async fn latest(&self, session: &SessionId) -> Result<Option<LastEvent>, BusError> {
        self.last(session).await
    }

    /// A reader of the stored events with seq > `after`.
    async fn reader(&self, session: &SessionId, after: u64)
        -> Result<Box<dyn LogReader>, BusError>;

    /// Follows the session: yields the log's last message (if any) as of the
    /// call or later, and every message appended after it; once this
    /// returns, nothing appended is missed. Live messages need not wait for
    /// the last one (a slow read of it would hold them back), so the last
    /// may come after them; batches may also repeat or skip when the bus
    /// reconnects, and a failed read of the last message is an error item;
    /// callers check seqs.
    async fn follow(&self, session: &SessionId) -> Result<EventStream, BusError>;

    /// Ok while the log can be reached.
    async fn ping(&self) -> Result<(), BusError>;
}

#[async_trait]
pub trait LogReader: Send {
    /// Up to about `max` further events, contiguous and in order; an empty
    /// page means the reader has caught up with the log. The first page
    /// starts later than `after + 1` when the events between have expired.
    async fn next_page(&mut self, max: usize) -> Result<Vec<RawEvent>, BusError>;
}

#[async_trait]
pub trait ControlChannel: Send + Sync + 'static {
    /// Sends a control op to whoever runs the session now (at most once).
    async fn send(&self, session: &SessionId, op: ControlOp) -> Result<(), BusError>;
    /// Control ops for one session, from now on.
    async fn subscribe(
        &self,
        session: &SessionId,
    ) -> Result<BoxStream<'static, ControlOp>, BusError>;
}

/// Answers for a taken run request: done with it, or offer it again soon.
#[async_trait]
pub trait RunAck: Send {
    /// Acknowledges the request, removing it from the queue.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Offers the request again `after` this (to any worker), instead of at
    /// the end of the ack wait: the taker could not start it for a passing
    /// reason (the bus was electing a leader, its connection moved).
    async fn retry(self: Box<Self>, after: Duration) -> Result<(), BusError>;
}

/// A run request taken from the queue. Unacknowledged requests are offered
/// again after a while (to another worker, if this one died).
pub struct RunTicket {
    pub request: RunRequest,
    pub ack: Box<dyn RunAck>,
}

#[async_trait]
pub trait RunQueue: Send + Sync + 'static {
    /// Queues a run on its agent's queue (`weir.runs.<agent>`); queueing the
    /// same session twice is stored once.
    async fn enqueue(&self, run: &RunRequest) -> Result<(), BusError>;
    /// Up to `max` run requests for `agent`: those waiting now, or else the
    /// first to arrive within `wait` (empty when none did). Every worker of
    /// an agent takes from the same queue.
    async fn take(
        &self,
        agent: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RunTicket>, BusError>;
}

/// Checks an agent name: it becomes a subject token and a consumer name,
/// so it is held to the session id rule (`[A-Za-z0-9_-]{1,64}`).
pub fn check_agent_name(agent: &str) -> Result<(), BusError> {
    let ok = !agent.is_empty()
        && agent.len() <= 64
        && agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BusError::Unsupported(format!(
            "agent name {agent:?} must match [A-Za-z0-9_-]{{1,64}}"
        )))
    }
}

/// The parts of the bus, as the services hold them.
#[derive(Clone)]
pub struct Bus {
    pub log: Arc<dyn EventLog>,
    pub control: Arc<dyn ControlChannel>,
    pub runs: Arc<dyn RunQueue>,
    pub notices: Arc<dyn NoticeChannel>,
    pub nodes: Arc<dyn NodeRegistry>,
    pub leases: Arc<dyn LeaseTable>,
    pub inputs: Arc<dyn InputBox>,
    /// Whether this node can reach the log (network partitions).
    pub reach: Reach,
}

/// Settings shared by both implementations.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// How long events are kept.
    pub retention: Duration,
    /// How long a message id is remembered for deduplication.
    pub duplicate_window: Duration,
    /// How long a taken run may stay unacknowledged before it is offered again.
    pub run_ack_wait: Duration,
    /// Replicas of the streams (NATS only; 3 on a 3-node cluster).
    pub replicas: u8,
    /// How often the connection to NATS is pinged (failure detection).
    pub ping_interval: Duration,
    /// Longest wait for a NATS answer (publish acknowledgements, reads).
    pub request_timeout: Duration,
    /// A node that stops announcing itself leaves the registry after this.
    pub node_ttl: Duration,
}

impl BusConfig {
    /// The partition timings these settings give.
    pub fn timings(&self) -> Timings {
        Timings::new(self.ping_interval, self.request_timeout)
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            retention: Duration::from_secs(3600),
            duplicate_window: Duration::from_secs(120),
            run_ack_wait: Duration::from_secs(30),
            replicas: 1,
            ping_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            node_ttl: Duration::from_secs(10),
        }
    }
}

impl Bus {
    /// The in-process bus of the embedded mode.
    pub fn memory(config: BusConfig) -> Bus {
        let inputs = Arc::new(input::memory::MemoryInputs::new(config.retention));
        let bus = Arc::new(memory::MemoryBus::new(config));
        Bus {
            log: bus.clone(),
            control: bus.clone(),
            runs: bus.clone(),
            notices: bus.clone(),
            nodes: bus,
            leases: Arc::new(lease::memory::MemoryLeases::default()),
            inputs,
            reach: Reach::default(),
        }
    }

    /// Connects to NATS (any of `urls`, the servers of one cluster), checks
    /// the server's version and makes sure the streams exist.
    pub async fn nats(urls: &[String], name: &str, config: BusConfig) -> Result<Bus, BusError> {
        let bus = Arc::new(nats::NatsBus::connect(urls, name, config).await?);
        Ok(Bus {
            reach: bus.reach(),
            log: bus.clone(),
            control: bus.clone(),
            runs: bus.clone(),
            notices: bus.clone(),
            nodes: bus.clone(),
            leases: bus.clone(),
            inputs: bus,
        })
    }
}
