//! Session operations shared by the HTTP API, WebSocket and SSE: the
//! session's view (store reconciled with the log), resume checks and
//! control.

use weir_bus::LastEvent;
use weir_protocol::{ControlOp, EndReason, Event, SessionId, Status};
use weir_store::{SessionState, StoreError, Update};

use crate::error::ApiError;
pub use crate::expiry::Resume;
use crate::expiry::{self, Known};
use crate::{rebuild, AppState};

/// The session's state, reconciled with its log (the truth): outside
/// producers publish events without writing state, and a producer may die
/// between appending `end` and recording it. Built from the log alone
/// (partial: see [`crate::rebuild`]) while the store cannot be reached or
/// when it lost the state; a valid token proves the session exists.
/// For streams and control; `GET /v1/sessions/{id}` uses [`describe`].
///
/// The store and the log are asked at once; what the log told the store is
/// written back in the background.
pub async fn view(state: &AppState, id: &SessionId) -> Result<SessionState, ApiError> {
    let (stored, last) = tokio::join!(state.store.get(id), state.bus.log.last(id));
    match stored {
        Ok(Some(s)) => {
            let (s, update) = reconciled(s, last?.as_ref());
            if let Some(u) = update {
                write_back(state, &s.id, u);
            }
            Ok(s)
        }
        Ok(None) => Ok(rebuild::from_log(state.bus.log.as_ref(), id, false)
            .await?
            .ok_or(ApiError::NotFound)?),
        Err(e) => without_store(state, id, &e, false).await,
    }
}

/// [`view`] with the times of a state rebuilt from the log, which is
/// written back when the store lost it (Redis came back empty), and with the
/// lease's holder as `producer` when the store does not name one (an outside
/// producer's claim not recorded yet, or Redis away).
pub async fn describe(state: &AppState, id: &SessionId) -> Result<SessionState, ApiError> {
    let s = match state.store.get(id).await {
        Ok(Some(s)) => reconcile(state, s).await?,
        Ok(None) => {
            let s = rebuild::from_log(state.bus.log.as_ref(), id, true)
                .await?
                .ok_or(ApiError::NotFound)?;
            match state.store.create(&s).await {
                Ok(_) => tracing::debug!(session = %id, "session state rebuilt from the log"),
                Err(e) => {
                    tracing::debug!(session = %id, error = %e, "rebuilt state not written back")
                }
            }
            s
        }
        Err(e) => without_store(state, id, &e, true).await?,
    };
    Ok(with_lease_holder(state, s).await)
}

/// Names the holder of a live session's lease as its `producer`, when the
/// state does not.
async fn with_lease_holder(state: &AppState, mut s: SessionState) -> SessionState {
    if s.status.is_ended() || s.producer.is_some() {
        return s;
    }
    match state.bus.leases.get(&s.id).await {
        Ok(Some(lease)) if lease.entry.is_claimed() => {
            s.producer = Some(lease.entry.owner);
            s.unknown.retain(|f| f != "producer");
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(session = %s.id, error = %e, "lease not read"),
    }
    s
}

/// The state while the store cannot be reached: from the log, or queued as
/// far as anyone can tell when the log is still empty.
async fn without_store(
    state: &AppState,
    id: &SessionId,
    e: &StoreError,
    times: bool,
) -> Result<SessionState, ApiError> {
    tracing::debug!(session = %id, error = %e, "store unavailable; state from the log");
    Ok(rebuild::from_log(state.bus.log.as_ref(), id, times)
        .await?
        .unwrap_or_else(|| rebuild::unstarted(id)))
}

pub async fn reconcile(state: &AppState, s: SessionState) -> Result<SessionState, ApiError> {
    let last = state.bus.log.last(&s.id).await?;
    let (s, update) = reconciled(s, last.as_ref());
    // What the log told is written back, so that the index (listing by
    // status) follows sessions whose producer writes no state.
    if let Some(u) = update {
        if let Err(e) = state.store.update(&s.id, u).await {
            tracing::debug!(session = %s.id, error = %e, "reconciled state not written back");
        }
    }
    Ok(s)
}

/// Writes what the log told about a session to the store, without waiting
/// for it: the index (listing by status) follows sessions whose producer
/// writes no state.
fn write_back(state: &AppState, id: &SessionId, update: Update) {
    let (store, id) = (state.store.clone(), id.clone());
    tokio::spawn(async move {
        if let Err(e) = store.update(&id, update).await {
            tracing::debug!(session = %id, error = %e, "reconciled state not written back");
        }
    });
}

/// The state with what the log's last event tells, and the update that
/// records it when the store is behind.
fn reconciled(mut s: SessionState, last: Option<&LastEvent>) -> (SessionState, Option<Update>) {
    let Some(last) = last else {
        return (s, None);
    };
    s.last_seq = s.last_seq.max(last.event.seq);
    let update = if last.event.end && !s.status.is_ended() {
        let reason = rebuild::end_reason(&last.event);
        s.status = reason.status();
        s.end_reason = Some(reason);
        s.producer = None;
        Some(Update::ended(reason, last.event.seq))
    } else if !s.status.is_ended() {
        // The log says whether a live session is paused (its last event is
        // the `paused` notice) sooner than the producer's coalesced state
        // writes, and is the only place outside producers say it.
        let mut live = rebuild::live_status(&last.event);
        // A pause and resume while the run waits for its answer leave a
        // `resumed` notice last: the question is still open, as the
        // producer recorded (it records `streaming` once the answer is in).
        if live == Status::Streaming
            && s.status == Status::InputRequired
            && rebuild::is_resumed_notice(&last.event)
        {
            live = Status::InputRequired;
        }
        let changed = live != s.status;
        s.status = live;
        changed.then(|| Update::status(live))
    } else {
        None
    };
    (s, update)
}

/// [`view`] and the resume check ([`crate::expiry`]) in one, for the
/// streams: the store and the log are asked at once, since a client's first
/// event waits for both. The log is asked through any replica
/// ([`weir_bus::EventLog::latest`]), and again through the leader only when
/// that answer would refuse the client (a replica a moment behind must not
/// turn a valid `after` away). What the log told the store is written back
/// in the background (the stream does not wait on it): an end at once, a
/// live status only from the leader's answer, since a replica's may be older
/// than what the store holds.
pub async fn open(
    state: &AppState,
    id: &SessionId,
    after: u64,
) -> Result<(SessionState, Resume), ApiError> {
    let log = state.bus.log.as_ref();
    let (stored, latest) = tokio::join!(state.store.get(id), log.latest(id));
    let mut last = latest?;
    let mut from_leader = false;
    let known = match &stored {
        Ok(Some(s)) => Known {
            last_seq: s.last_seq,
            created_ms: (!s.unknown.iter().any(|f| f == "created")).then_some(s.created),
        },
        _ => Known {
            last_seq: 0,
            created_ms: None,
        },
    };
    if resume_outcome(state, after, last.as_ref(), known).is_err() {
        last = log.last(id).await?;
        from_leader = true;
    }
    let s = match stored {
        Ok(Some(s)) => {
            let (s, update) = reconciled(s, last.as_ref());
            let ended = last.as_ref().is_some_and(|l| l.event.end);
            if let Some(u) = update.filter(|_| from_leader || ended) {
                write_back(state, &s.id, u);
            }
            s
        }
        Ok(None) => rebuild::from_log(log, id, false)
            .await?
            .ok_or(ApiError::NotFound)?,
        Err(e) => without_store(state, id, &e, false).await?,
    };
    let outcome = resume_outcome(state, after, last.as_ref(), known);
    let label = match &outcome {
        Ok(_) => "recovered",
        Err(ApiError::Expired(_)) => "expired",
        Err(_) => return outcome.map(|r| (s, r)),
    };
    if after > 0 {
        metrics::counter!(weir_telemetry::names::RESUMES, "outcome" => label).increment(1);
    }
    outcome.map(|r| (s, r))
}

/// [`expiry::at_open`] with this node's retention and clock.
fn resume_outcome(
    state: &AppState,
    after: u64,
    last: Option<&LastEvent>,
    known: Known,
) -> Result<Resume, ApiError> {
    let retention = state.config.cluster.retention;
    expiry::at_open(
        after,
        last,
        known,
        retention,
        weir_protocol::now_ms() as u64,
    )
}

/// The thread `session` is a run of, from its state (for the thread token,
/// which opens its runs: [`crate::access`]).
pub(crate) async fn thread_of(
    state: &AppState,
    session: &SessionId,
) -> Result<Option<weir_protocol::ThreadId>, ApiError> {
    Ok(state.store.get(session).await?.and_then(|s| s.thread))
}

/// Events per second each client of the session gets, at most (0: unpaced):
/// the session's own `pace`, else the edge's `--pace`.
pub fn pace(state: &AppState, s: &SessionState) -> u32 {
    s.pace.unwrap_or(state.config.pace)
}

/// Asks the session's producer to pause, resume or cancel.
pub async fn control(state: &AppState, id: &SessionId, op: ControlOp) -> Result<(), ApiError> {
    let s = view(state, id).await?;
    if s.status.is_ended() {
        return Err(ApiError::Conflict(format!(
            "session already ended ({})",
            s.status.as_str()
        )));
    }
    // Recorded first, so that a producer that has not subscribed yet obeys
    // it. Best effort: while the store cannot be reached, the op still goes
    // over the bus to the producer running the session.
    if let Err(e) = state.store.request_control(id, op).await {
        tracing::debug!(session = %id, error = %e, "control op not stored; sent on the bus only");
    }
    // Outside producers (an `external` session's, or a worker of an agent
    // this edge does not host itself) read no state: a cancel before they
    // publish is put in the log, where they find it.
    let outside =
        s.agent == weir_protocol::EXTERNAL_AGENT || !state.config.agents.contains(&s.agent);
    if op == ControlOp::Cancel && outside && s.last_seq == 0 {
        return cancel_unstarted(state, id).await;
    }
    state.bus.control.send(id, op).await?;
    Ok(())
}

/// Ends an outside producer's session (an `external` one, or a Python
/// worker's) that has not published anything: such
/// a producer reads no state, so it could not learn of the cancel. The end
/// is appended at seq 1 behind the empty-log fence; a producer that starts
/// later finds the log taken and stops.
async fn cancel_unstarted(state: &AppState, id: &SessionId) -> Result<(), ApiError> {
    let end = Event::end(1, EndReason::Cancelled, None).to_raw();
    match state.bus.log.append(id, &[end], weir_bus::Fence(0)).await {
        Ok(_) => {
            let ended = Update::ended(EndReason::Cancelled, 1);
            if let Err(e) = state.store.update(id, ended).await {
                // The log has the end; views reconcile with it.
                tracing::debug!(session = %id, error = %e, "cancel not recorded in the store");
            }
        }
        // The producer published first: it gets the cancel on the bus.
        Err(weir_bus::BusError::Fenced) => state.bus.control.send(id, ControlOp::Cancel).await?,
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use weir_bus::{Appended, Bus, BusConfig, BusError, EventLog, EventStream, Fence, LogReader};
    use weir_protocol::{RawEvent, Status};

    use super::*;

    /// The memory log behind replicas that have not stored anything yet.
    struct Lagging(Arc<dyn EventLog>);

    #[async_trait]
    impl EventLog for Lagging {
        async fn append(
            &self,
            s: &SessionId,
            events: &[RawEvent],
            fence: Fence,
        ) -> Result<Appended, BusError> {
            self.0.append(s, events, fence).await
        }
        async fn last(&self, s: &SessionId) -> Result<Option<LastEvent>, BusError> {
            self.0.last(s).await
        }
        async fn latest(&self, _: &SessionId) -> Result<Option<LastEvent>, BusError> {
            Ok(None)
        }
        async fn reader(&self, s: &SessionId, after: u64) -> Result<Box<dyn LogReader>, BusError> {
            self.0.reader(s, after).await
        }
        async fn follow(&self, s: &SessionId) -> Result<EventStream, BusError> {
            self.0.follow(s).await
        }
        async fn ping(&self) -> Result<(), BusError> {
            Ok(())
        }
    }

    #[test]
    fn a_resume_during_a_wait_for_an_answer_leaves_the_question_open() {
        let mut waiting = SessionState::new(SessionId::parse("asks").unwrap(), "mock");
        waiting.status = Status::InputRequired;
        let last = |kind: &str, data: serde_json::Value| LastEvent {
            event: Event::new(7, kind, None, data).to_raw(),
            fence: Fence(7),
        };
        let resumed = last("status", serde_json::json!({"state": "resumed"}));
        let (s, update) = reconciled(waiting.clone(), Some(&resumed));
        assert_eq!(s.status, Status::InputRequired);
        assert_eq!(update, None);
        // Once the answer is in and the agent goes on, the log says so.
        let token = last("token", serde_json::json!({"text": "you"}));
        let (s, update) = reconciled(waiting, Some(&token));
        assert_eq!(s.status, Status::Streaming);
        assert_eq!(update, Some(Update::status(Status::Streaming)));
    }

    #[tokio::test]
    async fn a_lagging_replica_does_not_turn_a_valid_resume_away() {
        let mut bus = Bus::memory(BusConfig::default());
        bus.log = Arc::new(Lagging(bus.log.clone()));
        let store: Arc<dyn weir_store::SessionStore> = Arc::new(
            weir_store::memory::MemoryStore::new(std::time::Duration::from_secs(60)),
        );
        let id = SessionId::parse("lag").unwrap();
        store
            .create(&SessionState::new(id.clone(), "mock"))
            .await
            .unwrap();
        let events: Vec<_> = (1..=3)
            .map(|n| Event::new(n, "token", None, serde_json::json!({"text": "x"})).to_raw())
            .collect();
        bus.log.append(&id, &events, Fence(0)).await.unwrap();
        let state = AppState::new(
            crate::EdgeConfig::local("a-lagging-replica-test-secret-32b"),
            bus,
            store,
        )
        .unwrap();
        // The replica knows no event: the leader is asked before refusing.
        let (s, resume) = open(&state, &id, 2).await.unwrap();
        assert!(matches!(resume, Resume::Stream));
        assert_eq!(s.last_seq, 3);
        // Beyond what the leader has is still refused.
        assert!(matches!(
            open(&state, &id, 4).await,
            Err(ApiError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn a_cancel_before_an_outside_worker_starts_is_put_in_the_log() {
        let bus = Bus::memory(BusConfig::default());
        let store: Arc<dyn weir_store::SessionStore> = Arc::new(
            weir_store::memory::MemoryStore::new(std::time::Duration::from_secs(60)),
        );
        let id = SessionId::parse("queued-for-python").unwrap();
        store
            .create(&SessionState::new(id.clone(), "support-team"))
            .await
            .unwrap();
        let state = AppState::new(
            crate::EdgeConfig::local("cancel-test-secret-of-at-least-32-bytes"),
            bus.clone(),
            store,
        )
        .unwrap();
        control(&state, &id, ControlOp::Cancel).await.unwrap();
        let last = bus
            .log
            .last(&id)
            .await
            .unwrap()
            .expect("the end in the log");
        assert!(last.event.end && last.event.seq == 1);
        let s = view(&state, &id).await.unwrap();
        assert_eq!(s.status, Status::Cancelled);
    }

    #[tokio::test]
    async fn the_state_names_the_lease_holder_when_the_store_does_not() {
        let bus = Bus::memory(BusConfig::default());
        let store: Arc<dyn weir_store::SessionStore> = Arc::new(
            weir_store::memory::MemoryStore::new(std::time::Duration::from_secs(60)),
        );
        let id = SessionId::parse("claimed-unrecorded").unwrap();
        store
            .create(&SessionState::new(id.clone(), "external"))
            .await
            .unwrap();
        let state = AppState::new(
            crate::EdgeConfig::local("lease-test-secret-of-at-least-32-bytes"),
            bus.clone(),
            store,
        )
        .unwrap();
        let unclaimed = weir_bus::LeaseEntry::unclaimed(std::time::Duration::from_secs(60));
        bus.leases.acquire(&id, unclaimed).await.unwrap();
        assert_eq!(describe(&state, &id).await.unwrap().producer, None);
        let mine = weir_bus::LeaseEntry::new("py-7", std::time::Duration::from_secs(5), false);
        bus.leases.acquire(&id, mine).await.unwrap().unwrap();
        assert_eq!(
            describe(&state, &id).await.unwrap().producer.as_deref(),
            Some("py-7")
        );
    }
}
