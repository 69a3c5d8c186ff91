//! A run's session state, written to the store off the publish path.
//!
//! The run hands changes over without waiting ([`Recorder::record`]); one
//! task per run writes them, coalesced, at most every [`WRITE_EVERY`], and
//! mere progress (a higher `last_seq`, after every publish) at most every
//! [`PROGRESS_EVERY`]: the log is what readers trust for it, and one store
//! write per publish cost Redis round trips per event. So a
//! store that is slow or unreachable never delays an event: its writes wait,
//! merged in order, and go out when it answers again. When the run is over,
//! [`Recorder::settle`] hands over the end, and the lease (on the bus) is
//! released after it is written — retried while the store is down, for up to
//! [`SETTLE_WITHIN`]; past that the lease lapses and a reaper records the
//! end from the log.
//!
//! A write that finds the session's state gone (Redis came back empty) is
//! not redone: edges rebuild the state from the log when it is asked for;
//! a run that starts for a session whose state is gone, or not written yet,
//! writes it from its request ([`recreate`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use weir_protocol::{RunRequest, SessionId};
use weir_store::{SessionState, StoreError, Update};

use crate::Ctx;

/// At most one state write per run this often.
pub const WRITE_EVERY: Duration = Duration::from_millis(100);
/// A change of nothing but `last_seq` waits this long for company.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long a finished run keeps trying to record its end and release its
/// lease while the store is unreachable.
pub const SETTLE_WITHIN: Duration = Duration::from_secs(600);
/// The longest wait between two tries while the store is unreachable.
const RETRY_AT_MOST: Duration = Duration::from_secs(2);

/// Hands a run's state changes to its writer task.
pub struct Recorder {
    shared: Arc<Shared>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    update: Option<Update>,
    /// Write what is pending, release the lease, stop.
    settle: bool,
    /// The run's lease, released once the end is written.
    lease: Option<weir_bus::Lease>,
}

impl Recorder {
    /// Starts the writer of session `id`'s state.
    pub fn start(ctx: Arc<Ctx>, id: SessionId) -> Recorder {
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            wake: Notify::new(),
        });
        tokio::spawn(write(ctx, id, shared.clone()));
        Recorder { shared }
    }

    /// Queues a change; never waits for the store. Progress alone is
    /// written with the next other change, or within [`PROGRESS_EVERY`].
    pub fn record(&self, update: Update) {
        let progress_only =
            update.status.is_none() && update.end_reason.is_none() && update.producer.is_none();
        self.shared.merge(update);
        if !progress_only {
            self.shared.wake.notify_one();
        }
    }

    /// Queues the last change; then `lease` is released and the writer stops.
    pub fn settle(&self, last: Option<Update>, lease: Option<weir_bus::Lease>) {
        if let Some(update) = last {
            self.shared.merge(update);
        }
        let mut p = self.shared.lock();
        p.settle = true;
        if lease.is_some() {
            p.lease = lease;
        }
        drop(p);
        self.shared.wake.notify_one();
    }
}

/// A run that stops without settling (its task was aborted) still stops its
/// writer; its lease, never handed over, lapses and is reaped.
impl Drop for Recorder {
    fn drop(&mut self) {
        self.settle(None, None);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().expect("recorder lock")
    }

    /// Adds `update` after what is pending.
    fn merge(&self, update: Update) {
        let mut p = self.lock();
        p.update = Some(match p.update.take() {
            Some(earlier) => earlier.then(update),
            None => update,
        });
    }

    /// Puts back an update that could not be written, before newer ones.
    fn put_back(&self, update: Update) {
        let mut p = self.lock();
        p.update = Some(match p.update.take() {
            Some(later) => update.then(later),
            None => update,
        });
    }

    /// Waits for something to do: (the pending update, whether to settle).
    /// A change other than progress wakes it at once (a notification left
    /// while it was writing counts); progress alone, within
    /// [`PROGRESS_EVERY`].
    async fn next(&self) -> (Option<Update>, bool) {
        loop {
            let _ = tokio::time::timeout(PROGRESS_EVERY, self.wake.notified()).await;
            let mut p = self.lock();
            if p.update.is_some() || p.settle {
                return (p.update.take(), p.settle);
            }
        }
    }
}

async fn write(ctx: Arc<Ctx>, id: SessionId, shared: Arc<Shared>) {
    let mut pause = WRITE_EVERY;
    let mut settling_since: Option<Instant> = None;
    loop {
        let (update, settle) = shared.next().await;
        let mut ok = true;
        if let Some(update) = update {
            if let Err(e) = ctx.store.update(&id, update.clone()).await {
                tracing::debug!(session = %id, error = %e, "state not recorded yet");
                shared.put_back(update);
                ok = false;
            }
        }
        if settle {
            let since = *settling_since.get_or_insert_with(Instant::now);
            let lease = shared.lock().lease.clone();
            if ok && shared.lock().update.is_none() {
                let released = match &lease {
                    Some(lease) => ctx.bus.leases.release(lease).await,
                    None => Ok(()),
                };
                match released {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(session = %id, error = %e, "lease not released yet");
                        ok = false;
                    }
                }
            }
            if since.elapsed() >= SETTLE_WITHIN {
                tracing::warn!(session = %id, "gave up recording the run's end; its lease will lapse and be reaped");
                return;
            }
        }
        pause = if ok {
            WRITE_EVERY
        } else {
            (pause * 2).min(RETRY_AT_MOST)
        };
        tokio::time::sleep(pause).await;
    }
}

/// Writes the state of a session that has none from its run request: the
/// edge's own write has not landed yet (edges queue the request while they
/// write), or the store lost it (Redis came back empty). The request
/// proves the session was created, and requests expire with the state's
/// retention, so a request without state is one whose state is on its way
/// or forgotten. A request of a current edge carries the whole initial
/// state, so this writes exactly what the edge writes, and whichever write
/// lands first the other finds it taken; when the edge's landed first, that
/// state is returned.
pub(crate) async fn recreate(ctx: &Ctx, req: &RunRequest) -> Result<SessionState, StoreError> {
    let state = SessionState::of_request(req);
    if ctx.store.create(&state).await? {
        tracing::debug!("the session had no state; written from the run request");
        return Ok(state);
    }
    // Written meanwhile (by its edge, as a rule): that one stands.
    Ok(ctx.store.get(&req.session).await?.unwrap_or(state))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use weir_store::{SessionState, SessionStore};

    use super::*;
    use crate::testing::{ctx, memory_bus, sid, Flaky};

    fn progress(seq: u64) -> Update {
        Update {
            last_seq: Some(seq),
            ..Update::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn progress_alone_is_written_once_a_second_and_other_changes_at_once() {
        let store = Flaky::new();
        let ctx = ctx("p1", &memory_bus(), store.clone(), Duration::from_secs(2));
        let id = sid("rec-1");
        store
            .create(&SessionState::new(id.clone(), "mock"))
            .await
            .unwrap();
        let rec = Recorder::start(ctx, id.clone());
        let writes = || store.updates.load(Ordering::Relaxed);
        rec.record(Update::status(weir_protocol::Status::Streaming));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(writes(), 1, "a status change is written at once");
        // 50 publishes over half a second: no write yet.
        for seq in 1..=50 {
            rec.record(progress(seq));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(writes(), 1);
        tokio::time::sleep(PROGRESS_EVERY).await;
        assert_eq!(writes(), 2, "progress waits at most PROGRESS_EVERY");
        assert_eq!(store.get(&id).await.unwrap().unwrap().last_seq, 50);
        // A pause is not held back by the progress before it.
        rec.record(progress(51));
        rec.record(Update::status(weir_protocol::Status::Paused));
        tokio::time::sleep(WRITE_EVERY + Duration::from_millis(10)).await;
        let s = store.get(&id).await.unwrap().unwrap();
        assert_eq!((s.status, s.last_seq), (weir_protocol::Status::Paused, 51));
        assert_eq!(writes(), 3);
    }
}
