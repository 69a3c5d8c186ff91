//! The lease table in one process, with the NATS table's semantics: one
//! revision counter for the whole table, compare-and-set on it, and a
//! watch that starts with every lease and ends when it fell behind.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use weir_protocol::SessionId;

use super::{Lease, LeaseChange, LeaseEntry, LeaseTable};
use crate::BusError;

/// Changes a watcher may be behind before its watch ends.
const WATCH_CAPACITY: usize = 4096;

pub struct MemoryLeases {
    table: Mutex<Table>,
    changes: broadcast::Sender<LeaseChange>,
}

#[derive(Default)]
struct Table {
    leases: HashMap<SessionId, Lease>,
    revision: u64,
}

impl Default for MemoryLeases {
    fn default() -> Self {
        MemoryLeases {
            table: Mutex::default(),
            changes: broadcast::channel(WATCH_CAPACITY).0,
        }
    }
}

impl MemoryLeases {
    /// Writes `entry` if the session's lease is at `expect` (`None`: no lease).
    fn write(&self, session: &SessionId, expect: Option<u64>, entry: LeaseEntry) -> Option<Lease> {
        let mut t = self.table.lock().expect("lease table lock");
        if t.leases.get(session).map(|l| l.revision) != expect {
            return None;
        }
        t.revision += 1;
        let lease = Lease {
            session: session.clone(),
            entry,
            revision: t.revision,
        };
        t.leases.insert(session.clone(), lease.clone());
        let _ = self.changes.send(LeaseChange::Written(lease.clone()));
        Some(lease)
    }
}

#[async_trait]
impl LeaseTable for MemoryLeases {
    async fn acquire(
        &self,
        session: &SessionId,
        entry: LeaseEntry,
    ) -> Result<Option<Lease>, BusError> {
        let held = self.get(session).await?;
        Ok(match held {
            None => self.write(session, None, entry),
            Some(l) if !l.entry.is_claimed() => self.write(session, Some(l.revision), entry),
            Some(_) => None,
        })
    }

    async fn replace(&self, lease: &Lease, entry: LeaseEntry) -> Result<Option<Lease>, BusError> {
        Ok(self.write(&lease.session, Some(lease.revision), entry))
    }

    async fn release(&self, lease: &Lease) -> Result<(), BusError> {
        let mut t = self.table.lock().expect("lease table lock");
        if t.leases.get(&lease.session).map(|l| l.revision) == Some(lease.revision) {
            t.leases.remove(&lease.session);
            t.revision += 1;
            let _ = self
                .changes
                .send(LeaseChange::Released(lease.session.clone()));
        }
        Ok(())
    }

    async fn get(&self, session: &SessionId) -> Result<Option<Lease>, BusError> {
        let t = self.table.lock().expect("lease table lock");
        Ok(t.leases.get(session).cloned())
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<LeaseChange, BusError>>, BusError> {
        let t = self.table.lock().expect("lease table lock");
        let now: Vec<_> = t
            .leases
            .values()
            .cloned()
            .map(|l| Ok(LeaseChange::Written(l)))
            .collect();
        let later = BroadcastStream::new(self.changes.subscribe())
            .take_while(|c| futures::future::ready(c.is_ok()))
            .filter_map(|c| futures::future::ready(c.ok().map(Ok)));
        Ok(stream::iter(now).chain(later).boxed())
    }

    async fn probe(&self, _node: &str) -> Result<(), BusError> {
        Ok(())
    }
}
