//! Starting a session's run: the state write, the run request's enqueue and
//! this edge's warm feed for the session (so that its first client, which
//! usually connects here next, finds the first events in the ring) go out
//! at once, not one after the other: a start costs the slowest of the
//! three, not their sum (BENCHMARKS.md, "The create path").
//!
//! What that keeps: a client is told 201 only when both the state and the
//! run request are stored. When the state write fails but the request was
//! queued, the session is ended in its log before the 503 goes out (an
//! `error` `not_created` + `end` `failed` at seq 1, behind the empty-log
//! fence), so the producer that takes the request finds the end and drops
//! it: no run goes on that nobody was given. Only a session whose id was
//! chosen by the caller is written first and queued after, since its id
//! may be taken (409) and a request must never be queued for someone
//! else's session.

use weir_protocol::{EndReason, Event, RunRequest};
use weir_store::{SessionState, Update};

use crate::error::ApiError;
use crate::AppState;

/// How long a session created here is followed before its first client
/// connects (see [`crate::hub::Hub::warm`]; at most a quarter of the
/// retention), and how long its creation waits for that at most: past it,
/// the first events are read from the log.
pub const WARM_HOLD: std::time::Duration = std::time::Duration::from_secs(5);
pub const WARM_WAIT: std::time::Duration = std::time::Duration::from_millis(25);

/// Writes `new`, queues `run` and warms this edge's feed for the session,
/// all at once. `new`'s id must be fresh (random): see the module docs.
pub async fn launch(
    state: &AppState,
    new: &SessionState,
    run: &RunRequest,
) -> Result<(), ApiError> {
    let (created, queued, ()) = tokio::join!(
        state.store.create(new),
        state.bus.runs.enqueue(run),
        warm(state, new)
    );
    match (created, queued) {
        (Ok(true), Ok(())) => Ok(()),
        (Ok(false), queued) => {
            // A fresh id taken: only a broken id generator does this.
            if queued.is_ok() {
                retract(state, new).await;
            }
            Err(ApiError::Conflict(format!(
                "session {} already exists",
                new.id
            )))
        }
        (Err(e), queued) => {
            if queued.is_ok() {
                retract(state, new).await;
            }
            Err(e.into())
        }
        (Ok(true), Err(e)) => {
            abandon(state, new).await;
            Err(e.into())
        }
    }
}

/// [`launch`] for a session whose id the caller chose: written first (the
/// id may be taken: 409), queued after.
pub async fn launch_named(
    state: &AppState,
    new: &SessionState,
    run: &RunRequest,
) -> Result<(), ApiError> {
    let (created, ()) = tokio::join!(state.store.create(new), warm(state, new));
    if !created? {
        return Err(ApiError::Conflict(format!(
            "session {} already exists",
            new.id
        )));
    }
    if let Err(e) = state.bus.runs.enqueue(run).await {
        abandon(state, new).await;
        return Err(e.into());
    }
    Ok(())
}

/// This node follows the session before its run starts. Never held past a
/// fraction of the retention: a ring that outlives the log's events would
/// serve a late client what the log no longer has.
pub async fn warm(state: &AppState, new: &SessionState) {
    let hold = WARM_HOLD.min(state.config.cluster.retention / 4);
    state.hub.warm(&new.id, WARM_WAIT, hold).await;
}

/// Ends, in its log, a session whose run request was queued but whose
/// creation was refused, so that no producer runs it. A producer that
/// already published owns the log: it is cancelled instead.
async fn retract(state: &AppState, new: &SessionState) {
    let error = Event::new(
        1,
        "error",
        None,
        serde_json::json!({
            "code": "not_created",
            "message": "the session's state could not be stored; its creation was refused",
        }),
    );
    let end = Event::end(2, EndReason::Failed, None);
    let events = [error.to_raw(), end.to_raw()];
    match state
        .bus
        .log
        .append(&new.id, &events, weir_bus::Fence(0))
        .await
    {
        Ok(_) => {}
        Err(weir_bus::BusError::Fenced) => {
            let cancel = weir_protocol::ControlOp::Cancel;
            if let Err(e) = state.bus.control.send(&new.id, cancel).await {
                tracing::warn!(session = %new.id, error = %e, "refused session's run not cancelled");
            }
        }
        Err(e) => {
            tracing::warn!(session = %new.id, error = %e, "refused session's run not ended in its log")
        }
    }
}

/// Marks failed a session whose state was written but whose run request
/// could not be queued (the client gets 503): it never runs.
async fn abandon(state: &AppState, new: &SessionState) {
    if let Err(e) = state
        .store
        .update(&new.id, Update::ended(EndReason::Failed, 0))
        .await
    {
        tracing::debug!(session = %new.id, error = %e, "unqueued session not marked failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_bus::{Bus, BusConfig};
    use weir_protocol::SessionId;
    use weir_store::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn a_queued_run_whose_state_was_refused_is_ended_in_its_log() {
        let bus = Bus::memory(BusConfig::default());
        let store = Arc::new(MemoryStore::new(std::time::Duration::from_secs(60)));
        let config = crate::EdgeConfig::local("launch-unit-test-secret-of-32-bytes");
        let state = AppState::new(config, bus, store).unwrap();
        let id = SessionId::parse("refused").unwrap();
        let new = SessionState::new(id.clone(), "mock");
        // The state write is refused (here: the id is taken), after the
        // request was queued at the same time.
        assert!(state.store.create(&new).await.unwrap());
        let run = RunRequest {
            session: id.clone(),
            agent: "mock".into(),
            input: serde_json::json!({}),
            thread: None,
        };
        assert!(matches!(
            launch(&state, &new, &run).await,
            Err(ApiError::Conflict(_))
        ));
        let last = state.bus.log.last(&id).await.unwrap().expect("an end");
        assert!(last.event.end);
        assert_eq!(last.event.seq, 2);
        let page = state
            .bus
            .log
            .reader(&id, 0)
            .await
            .unwrap()
            .next_page(10)
            .await;
        let first: serde_json::Value = serde_json::from_slice(&page.unwrap()[0].json).unwrap();
        assert_eq!(first["data"]["code"], "not_created");
    }
}
