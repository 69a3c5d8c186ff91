//! Ends the runs of dead producers, whatever they were (a weir producer, a
//! Python worker, an application's `Publisher`), and `external` sessions
//! nobody claimed. Every edge and producer runs one.
//!
//! A reaper watches the lease table (`weir_bus::lease`) and counts a lease
//! lapsed once it has seen no new revision of it for the lease's time, on
//! its own clock, since it (re)started watching — and only while its own
//! probe writes to the table have succeeded for that long: after a bus
//! outage or a leader election of the table, when nobody could renew,
//! every lease gets a full lease time again. It takes a
//! lapsed lease over by compare-and-set on the revision it saw (so exactly
//! one reaper wins, and a renewal it had not seen yet beats it), then
//! appends `error` + `end` reason `failed`, fenced on the log's last
//! message: if the old producer was only slow and wrote meanwhile, the
//! fence refuses the reaper, and if the reaper wrote first, the fence
//! refuses the old producer. The store is not consulted to decide: a Redis
//! outage changes nothing here. The end is recorded in the store; should
//! that fail, the reaper keeps the lease, which lapses and is reaped again.
//!
//! Producers that write no state (outside ones) get it written here: a
//! claim makes the session `streaming` with the holder as its `producer`,
//! and a release records the end the log holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use weir_bus::{Bus, BusError, Lease, LeaseChange, LeaseEntry};
use weir_protocol::{EndReason, Event, SessionId, Status};
use weir_store::{SessionStore, Update};
use weir_telemetry::names;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a reaper needs.
#[derive(Clone)]
pub struct Reaper {
    pub bus: Bus,
    pub store: Arc<dyn SessionStore>,
    /// This node's id: the owner of the leases it takes over.
    pub node: String,
    /// The lease time of a take-over.
    pub lease_ttl: Duration,
    /// How often lapsed leases are looked for.
    pub interval: Duration,
}

/// Leases as this reaper has seen them: each with when its revision was
/// first seen.
type Seen = HashMap<SessionId, (Lease, Instant)>;

impl Reaper {
    /// Watches and reaps until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            match self.bus.leases.watch().await {
                Ok(watch) => self.watching(watch, &stop).await,
                Err(e) => tracing::debug!(error = %e, "reaper cannot watch the leases"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn watching(
        &self,
        mut watch: futures::stream::BoxStream<'static, Result<LeaseChange, BusError>>,
        stop: &CancellationToken,
    ) {
        let mut seen = Seen::new();
        // Since when every probe of the table has gone through.
        let mut writable_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                change = watch.next() => match change {
                    Some(Ok(change)) => self.observe(&mut seen, change).await,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "lease watch failed; watching again");
                        return;
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    match self.bus.leases.probe(&self.node).await {
                        Ok(()) => {
                            writable_since.get_or_insert_with(Instant::now);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "the lease table takes no writes; not reaping");
                            writable_since = None;
                        }
                    }
                    let trusted = writable_since.map_or(Duration::ZERO, |t| t.elapsed());
                    let lapsed: Vec<Lease> = seen
                        .values()
                        .filter(|(l, at)| at.elapsed() >= l.entry.ttl() && trusted >= l.entry.ttl())
                        .map(|(l, _)| l.clone())
                        .take(100)
                        .collect();
                    for lease in lapsed {
                        // Not reaped again before its take-over's time.
                        seen.insert(lease.session.clone(), (lease.clone(), Instant::now()));
                        if let Err(e) = self.reap(&lease).await {
                            tracing::warn!(session = %lease.session, error = %e, "could not end a lost run; will retry");
                        }
                    }
                }
            }
        }
    }

    async fn observe(&self, seen: &mut Seen, change: LeaseChange) {
        match change {
            LeaseChange::Written(lease) => {
                let before = seen.get(&lease.session).map(|(l, _)| &l.entry);
                let claimed = lease.entry.is_claimed()
                    && !lease.entry.records
                    && before.is_none_or(|b| b.owner != lease.entry.owner);
                if claimed {
                    self.record_claim(&lease).await;
                }
                seen.insert(lease.session.clone(), (lease, Instant::now()));
            }
            LeaseChange::Released(session) => {
                let before = seen.remove(&session);
                if before.is_some_and(|(l, _)| !l.entry.records && l.entry.is_claimed()) {
                    if let Err(e) = self.record_end(&session).await {
                        tracing::debug!(%session, error = %e, "end of an outside run not recorded");
                    }
                }
            }
        }
    }

    /// An outside producer claimed the session: it is its producer, and a
    /// queued session is streaming (a paused one stays paused: a reaper that
    /// watches again sees every lease as new).
    async fn record_claim(&self, lease: &Lease) {
        let owner = &lease.entry.owner;
        let recorded = match self.store.get(&lease.session).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(session = %lease.session, error = %e, "claim not recorded");
                return;
            }
        };
        if recorded.producer.as_ref() == Some(owner) && recorded.status != Status::Queued {
            return;
        }
        let update = Update {
            status: (recorded.status == Status::Queued).then_some(Status::Streaming),
            producer: Some(Some(owner.clone())),
            ..Update::default()
        };
        if let Err(e) = self.store.update(&lease.session, update).await {
            tracing::debug!(session = %lease.session, error = %e, "claim not recorded");
        }
    }

    /// Records the end the log holds, if it holds one.
    async fn record_end(&self, id: &SessionId) -> Result<bool, Error> {
        let Some(last) = self.bus.log.last(id).await? else {
            return Ok(false);
        };
        if !last.event.end {
            return Ok(false);
        }
        let reason = serde_json::from_slice::<Event>(&last.event.json)
            .ok()
            .and_then(|e| e.data["reason"].as_str().and_then(EndReason::parse))
            .unwrap_or(EndReason::Failed);
        self.store
            .update(id, Update::ended(reason, last.event.seq))
            .await?;
        Ok(true)
    }

    /// Takes a lapsed lease over and ends its session; the lease is given
    /// up only once the end is in the log and the store.
    async fn reap(&self, lapsed: &Lease) -> Result<(), Error> {
        let mine = LeaseEntry::new(&self.node, self.lease_ttl, true);
        let Some(mine) = self.bus.leases.replace(lapsed, mine).await? else {
            return Ok(()); // renewed meanwhile, or another reaper has it
        };
        let id = &lapsed.session;
        if !self.record_end(id).await? {
            let (code, message) = if lapsed.entry.is_claimed() {
                (
                    "producer_lost",
                    "the producer running this session stopped responding",
                )
            } else {
                (
                    "unclaimed",
                    "no producer claimed this session within the claim timeout",
                )
            };
            let seq = self.end_failed(id, code, message).await?;
            if let Some(seq) = seq {
                self.store
                    .update(id, Update::ended(EndReason::Failed, seq))
                    .await?;
                metrics::counter!(names::RUNS_REAPED).increment(1);
                tracing::warn!(session = %id, producer = %lapsed.entry.owner, code, "ended a lost run as failed");
            } else {
                self.record_end(id).await?;
            }
        }
        self.bus.leases.release(&mine).await?;
        Ok(())
    }

    /// Appends `error` + `end` `failed` after the log's last event; the
    /// seq of the end, or `None` when the log ended meanwhile.
    async fn end_failed(
        &self,
        id: &SessionId,
        code: &str,
        message: &str,
    ) -> Result<Option<u64>, Error> {
        let mut last = self.bus.log.last(id).await?;
        let started = Instant::now();
        loop {
            if last.as_ref().is_some_and(|l| l.event.end) {
                return Ok(None);
            }
            let (seq, fence) = last.map_or((0, Default::default()), |l| (l.event.seq, l.fence));
            let events = [
                Event::error(seq + 1, code, message),
                Event::end(seq + 2, EndReason::Failed, None),
            ]
            .map(|e| e.to_raw());
            match self.bus.log.append(id, &events, fence).await {
                Ok(_) => return Ok(Some(seq + 2)),
                // The old producer wrote meanwhile; having lost its lease it
                // stops at its next renewal. Read the log again and retry.
                Err(BusError::Fenced) if started.elapsed() < self.lease_ttl => {
                    tokio::time::sleep(self.lease_ttl / 10).await;
                    last = self.bus.log.last(id).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
