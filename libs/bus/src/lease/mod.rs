//! Leases: who runs each session. Whoever publishes a session's events —
//! a weir producer, an outside worker, an application's `Publisher` —
//! holds the session's entry in the lease table while it runs and renews
//! it; an entry nobody renews for its time is taken over by a reaper,
//! which ends the session `failed` (fenced on the log, so that exactly one
//! writer wins).
//!
//! The table needs nothing but the bus: on NATS it is the key-value bucket
//! `WEIR_LEASES` (key = session id, value = [`LeaseEntry`] as JSON), and
//! every change is a compare-and-set on the key's revision, which any
//! NATS client can do (the Python package does the same writes). No clock
//! is compared across machines: a reaper watches the table and counts a
//! lease lapsed when it has seen no new revision of it for the lease time
//! on its own clock, and its take-over names the revision it saw, so a
//! renewal that the reaper had not seen yet wins and the take-over fails.
//! A reaper that (re)starts watching gives every lease a full lease time
//! from then, and it reaps only once its own writes to the table (probes)
//! have gone through for a lease time: so a bus outage or a leader
//! election, when nobody could renew, reaps nothing.
//!
//! An `external` session is created with an unclaimed entry (empty owner)
//! whose time is the claim timeout: its producer claims it; a session that
//! nobody claims is reaped like a dead producer's.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use weir_protocol::SessionId;

use crate::BusError;

pub mod memory;

/// One session's lease, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEntry {
    /// Node id of the holder; empty while an `external` session waits for
    /// its producer to claim it.
    pub owner: String,
    /// The holder writes again within this (a third of it, normally); a
    /// reaper takes the lease over once it saw no write for this long.
    pub ttl_ms: u64,
    /// The holder records the session's state in the store itself (weir's
    /// producers); otherwise the nodes that watch the table record it.
    #[serde(default)]
    pub records: bool,
}

impl LeaseEntry {
    pub fn new(owner: &str, ttl: std::time::Duration, records: bool) -> LeaseEntry {
        LeaseEntry {
            owner: owner.to_owned(),
            ttl_ms: ttl.as_millis() as u64,
            records,
        }
    }

    /// The entry an edge writes for an `external` session.
    pub fn unclaimed(claim_timeout: std::time::Duration) -> LeaseEntry {
        LeaseEntry::new("", claim_timeout, false)
    }

    pub fn is_claimed(&self) -> bool {
        !self.owner.is_empty()
    }

    pub fn ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ttl_ms)
    }
}

/// A lease at one revision: what a compare-and-set names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub session: SessionId,
    pub entry: LeaseEntry,
    pub revision: u64,
}

/// A change to the table: a lease written (taken, renewed, claimed, taken
/// over) or gone (released).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    Written(Lease),
    Released(SessionId),
}

#[async_trait]
pub trait LeaseTable: Send + Sync + 'static {
    /// Takes the session's lease when nobody holds it: there is no entry,
    /// or an unclaimed one (an `external` session's producer claiming it).
    /// `None` when another holds it.
    async fn acquire(
        &self,
        session: &SessionId,
        entry: LeaseEntry,
    ) -> Result<Option<Lease>, BusError>;

    /// Writes `entry` if the lease is still at `lease.revision` (nobody
    /// wrote since): a renewal, or a reaper's take-over. `None` when
    /// someone else wrote meanwhile or the lease is gone.
    async fn replace(&self, lease: &Lease, entry: LeaseEntry) -> Result<Option<Lease>, BusError>;

    /// Removes the lease if it is still at `lease.revision`.
    async fn release(&self, lease: &Lease) -> Result<(), BusError>;

    /// The session's lease, if any.
    async fn get(&self, session: &SessionId) -> Result<Option<Lease>, BusError>;

    /// Every lease as of the call, then every change. Ends when the bus
    /// reconnects (changes may have been missed); watch again then.
    async fn watch(&self) -> Result<BoxStream<'static, Result<LeaseChange, BusError>>, BusError>;

    /// Writes `node`'s probe entry (not a lease): Ok when the table takes
    /// writes now. A reaper trusts what it saw lapse only once its probes
    /// have succeeded for a lease time: while the table could not be
    /// written (a bus outage, a leader election), nobody could renew.
    async fn probe(&self, node: &str) -> Result<(), BusError>;
}

/// Renews `lease` at a third of its time until `stop`, while `progress`
/// holds; returns `None` when another wrote the lease (the run is lost:
/// stop publishing), or the lease at its last revision when stopped. A
/// renewal that fails is tried again after a tenth of the time (the bus
/// may have moved to another server meanwhile). A bus that cannot be
/// reached is ridden out: nobody can take the lease then either, and
/// should a reaper take it meanwhile, the log's fence stops the holder. A
/// holder that makes no progress (`progress` says false: its writes are not
/// being stored) stops renewing, so that a reaper that can reach the table
/// ends the run.
pub async fn keep(
    table: &dyn LeaseTable,
    mut lease: Lease,
    stop: &tokio_util::sync::CancellationToken,
    progress: &(dyn Fn() -> bool + Send + Sync),
) -> Option<Lease> {
    let mut renewed_last = true;
    loop {
        let wait = if renewed_last { 3 } else { 10 };
        tokio::select! {
            _ = stop.cancelled() => return Some(lease),
            _ = tokio::time::sleep(lease.entry.ttl() / wait) => {}
        }
        if !progress() {
            tracing::debug!(session = %lease.session, "no progress: lease not renewed");
            renewed_last = true;
            continue;
        }
        renewed_last = false;
        match table.replace(&lease, lease.entry.clone()).await {
            Ok(Some(renewed)) => {
                lease = renewed;
                renewed_last = true;
            }
            // A renewal whose answer was lost was stored all the same: the
            // lease is still this holder's if the table holds its entry.
            Ok(None) => match table.get(&lease.session).await {
                Ok(Some(now)) if now.entry == lease.entry => {
                    lease = now;
                    renewed_last = true;
                }
                Ok(_) => return None,
                Err(e) => tracing::debug!(error = %e, "could not read the lease back"),
            },
            Err(e) => {
                tracing::debug!(session = %lease.session, error = %e, "lease not renewed; will retry")
            }
        }
    }
}
