//! Starting a session's run: the state write and this edge's warm feed for
//! the session (so that its first client, which usually connects here next,
//! finds the first events in the ring) go out at once; the run request is
//! queued once the state is stored.
//!
//! Why not all three at once: a producer that takes a run request whose
//! session has no state yet takes it for state Redis lost, and writes it
//! again from the request (`recreate` in the producer) — which then beats
//! the edge's own write, so the edge's create finds the id taken, and what
//! only the edge knows (`pace`, the creation time) is lost. Pipelining the
//! enqueue needs a create that tells "taken by this very request's
//! producer" apart, or a producer that waits for the edge's write; until
//! then the state is written first (tests/redis_outage.rs found the race).
//! A request that cannot be queued leaves its session failed, never queued
//! for ever.

use weir_protocol::{EndReason, RunRequest};
use weir_store::{SessionState, Update};

use crate::error::ApiError;
use crate::AppState;

/// How long a session created here is followed before its first client
/// connects (see [`crate::hub::Hub::warm`]; at most a quarter of the
/// retention), and how long its creation waits for that at most: past it,
/// the first events are read from the log.
pub const WARM_HOLD: std::time::Duration = std::time::Duration::from_secs(5);
pub const WARM_WAIT: std::time::Duration = std::time::Duration::from_millis(25);

/// Writes `new` (while warming this edge's feed for it), then queues `run`.
pub async fn launch(
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
    async fn a_taken_id_is_refused_and_no_run_is_queued_for_it() {
        let bus = Bus::memory(BusConfig::default());
        let store = Arc::new(MemoryStore::new(std::time::Duration::from_secs(60)));
        let config = crate::EdgeConfig::local("launch-unit-test-secret-of-32-bytes");
        let state = AppState::new(config, bus, store).unwrap();
        let id = SessionId::parse("taken").unwrap();
        let new = SessionState::new(id.clone(), "mock");
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
        let wait = std::time::Duration::from_millis(200);
        assert!(state
            .bus
            .runs
            .take("mock", 1, wait)
            .await
            .unwrap()
            .is_empty());
    }
}
