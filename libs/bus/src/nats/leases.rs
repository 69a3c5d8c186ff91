//! The lease table on NATS: the key-value bucket `WEIR_LEASES`, one key per
//! running session, every write a compare-and-set on the key's revision
//! (`Nats-Expected-Last-Subject-Sequence` on `$KV.WEIR_LEASES.<session>`).
//! Entries live at most the retention (a run outlives no log); a released
//! lease is deleted. Reapers' probes are the keys `probe.<node>`, and NATS watchdogs' `watchdog.<node>` (`super::watchdog`), which a
//! watch of single-token keys (session ids) does not see.

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use weir_protocol::SessionId;

use super::NatsBus;
use crate::lease::{Lease, LeaseChange, LeaseEntry, LeaseTable};
use crate::{BusConfig, BusError};

pub const LEASES_BUCKET: &str = "WEIR_LEASES";

/// The table's bucket, replicated like the streams.
pub(super) async fn leases_bucket(
    js: &jetstream::Context,
    config: &BusConfig,
) -> Result<kv::Store, BusError> {
    let want = kv::Config {
        bucket: LEASES_BUCKET.into(),
        description: "weir: the lease of every running session".into(),
        history: 1,
        max_age: config.retention,
        storage: jetstream::stream::StorageType::File,
        num_replicas: config.replicas.into(),
        ..Default::default()
    };
    match js.get_key_value(LEASES_BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_key_value(want).await {
            Ok(store) => Ok(store),
            // Another node created it first.
            Err(_) => js
                .get_key_value(LEASES_BUCKET)
                .await
                .map_err(BusError::unavailable),
        },
    }
}

fn encode(entry: &LeaseEntry) -> bytes::Bytes {
    serde_json::to_vec(entry)
        .expect("lease entries serialise")
        .into()
}

/// A stored entry as a lease; `None` for a deletion or a malformed value.
fn lease_of(entry: &kv::Entry) -> Option<Lease> {
    if entry.operation != kv::Operation::Put {
        return None;
    }
    let session = SessionId::parse(&entry.key).ok()?;
    match serde_json::from_slice::<LeaseEntry>(&entry.value) {
        Ok(value) => Some(Lease {
            session,
            entry: value,
            revision: entry.revision,
        }),
        Err(e) => {
            tracing::warn!(key = %entry.key, error = %e, "ignored a malformed lease");
            None
        }
    }
}

#[async_trait]
impl LeaseTable for NatsBus {
    async fn acquire(
        &self,
        session: &SessionId,
        entry: LeaseEntry,
    ) -> Result<Option<Lease>, BusError> {
        let key = session.as_str();
        match self.leases.create(key, encode(&entry)).await {
            Ok(revision) => {
                return Ok(Some(Lease {
                    session: session.clone(),
                    entry,
                    revision,
                }))
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(BusError::unavailable(e)),
        }
        // Held, or an `external` session's unclaimed entry: claim that.
        match self.get(session).await? {
            Some(held) if !held.entry.is_claimed() => self.replace(&held, entry).await,
            _ => Ok(None),
        }
    }

    async fn replace(&self, lease: &Lease, entry: LeaseEntry) -> Result<Option<Lease>, BusError> {
        let key = lease.session.as_str();
        // A quarter of the lease's time: a renewal the server leaves
        // unanswered is retried (after the watchdog moved the connection)
        // while the lease still holds.
        let update = self.leases.update(key, encode(&entry), lease.revision);
        match self.write(entry.ttl() / 4, update, |_| false).await? {
            Ok(revision) => Ok(Some(Lease {
                session: lease.session.clone(),
                entry,
                revision,
            })),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), BusError> {
        let key = lease.session.as_str();
        match self
            .leases
            .delete_expect_revision(key, Some(lease.revision))
            .await
        {
            Ok(()) => Ok(()),
            // Someone else wrote it since: theirs now.
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(()),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }

    async fn get(&self, session: &SessionId) -> Result<Option<Lease>, BusError> {
        let entry = self
            .leases
            .entry(session.as_str())
            .await
            .map_err(BusError::unavailable)?;
        Ok(entry.as_ref().and_then(lease_of))
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<LeaseChange, BusError>>, BusError> {
        let mut reconnected = self.reconnects.subscribe();
        reconnected.borrow_and_update();
        let watch = self
            .leases
            // Session ids only: single tokens (probes are `probe.<node>`).
            .watch_with_history("*")
            .await
            .map_err(BusError::unavailable)?;
        Ok(watch
            .filter_map(|entry| async move {
                match entry {
                    Err(e) => Some(Err(BusError::unavailable(e))),
                    Ok(entry) => match lease_of(&entry) {
                        Some(lease) => Some(Ok(LeaseChange::Written(lease))),
                        None if entry.operation != kv::Operation::Put => {
                            SessionId::parse(&entry.key)
                                .ok()
                                .map(|s| Ok(LeaseChange::Released(s)))
                        }
                        None => None,
                    },
                }
            })
            .take_until(async move {
                let _ = reconnected.changed().await;
            })
            .boxed())
    }

    async fn probe(&self, node: &str) -> Result<(), BusError> {
        let key = format!("probe.{}", crate::operators::node_key(node));
        let write = self.leases.put(key, bytes::Bytes::new());
        match self
            .write(self.config.request_timeout, write, |_| false)
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) => Err(BusError::unavailable(e)),
        }
    }
}
