//! Starting a session's run: the state write, this edge's warm feed for
//! the session (so that its first client, which usually connects here next,
//! finds the first events in the ring) and the run request go out at once,
//! so that a producer can take the run while the state is still being
//! written.
//!
//! A producer that takes the request before the edge's write lands finds
//! no state and writes it from the request (`recreate` in the producer).
//! The request carries the whole initial state ([`SessionState::run_request`]:
//! `created`, `pace`, the thread, and a creation nonce), so that write is
//! the edge's own, and the edge, finding the id taken, reads the state and
//! counts it as created when it names this creation's nonce. A state of
//! another creation is a real collision: 409, and a producer drops the
//! request (its nonce is not the state's).
//!
//! An id the client chose may be taken, and the outside workers that take
//! its agent's requests read no state to tell; such a session is written
//! first and queued after, as is every session while the store is known to
//! be down (its write fails at once, and nothing is queued). A request
//! that may have been queued for a session that then failed to start is
//! ended in the log ([`abandon`]): it never runs, and is never queued for
//! ever.

use serde_json::Value;
use weir_protocol::{creation_nonce, EndReason, Event, RunRequest};
use weir_store::{SessionState, StoreError, Update};

use crate::error::ApiError;
use crate::AppState;

/// How long a session created here is followed before its first client
/// connects (see [`crate::hub::Hub::warm`]; at most a quarter of the
/// retention), and how long its creation waits for that at most: past it,
/// the first events are read from the log.
pub const WARM_HOLD: std::time::Duration = std::time::Duration::from_secs(5);
pub const WARM_WAIT: std::time::Duration = std::time::Duration::from_millis(25);

/// Where a new session's id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    /// Made here at random: no other creation can hold it.
    Random,
    /// Chosen by the client (`POST /v1/sessions` with `"id"`): it may be taken.
    Chosen,
}

/// Writes `new` and queues its run with `input` (at once for a random id),
/// while warming this edge's feed for it. 409 when the id is another
/// session's.
pub async fn launch(
    state: &AppState,
    new: &SessionState,
    input: Value,
    id: Id,
) -> Result<(), ApiError> {
    let mut new = new.clone();
    new.nonce = Some(creation_nonce());
    let run = new.run_request(input);
    if id == Id::Chosen || state.store.up_since().is_none() {
        return launch_in_turn(state, &new, &run).await;
    }
    let (created, (), queued) = tokio::join!(
        create(state, &new),
        warm(state, &new),
        state.bus.runs.enqueue(&run)
    );
    match (created, queued) {
        (Ok(true), Ok(())) => Ok(()),
        // Queued, if at all, with a nonce the state does not hold: dropped.
        (Ok(false), _) => Err(taken(&new)),
        (Ok(true), Err(e)) => {
            abandon(state, &new).await;
            Err(e.into())
        }
        (Err(e), _) => {
            abandon(state, &new).await;
            Err(e.into())
        }
    }
}

/// The state write (with the warm feed), then the request.
async fn launch_in_turn(
    state: &AppState,
    new: &SessionState,
    run: &RunRequest,
) -> Result<(), ApiError> {
    let (created, ()) = tokio::join!(state.store.create(new), warm(state, new));
    if !created? {
        return Err(taken(new));
    }
    if let Err(e) = state.bus.runs.enqueue(run).await {
        abandon(state, new).await;
        return Err(e.into());
    }
    Ok(())
}

/// Writes `new`: true when it is stored, by this edge or — from this very
/// creation's request, which it took first — by a producer.
async fn create(state: &AppState, new: &SessionState) -> Result<bool, StoreError> {
    if state.store.create(new).await? {
        return Ok(true);
    }
    let stored = state.store.get(&new.id).await?;
    Ok(stored.is_some_and(|s| s.nonce == new.nonce))
}

fn taken(new: &SessionState) -> ApiError {
    ApiError::Conflict(format!("session {} already exists", new.id))
}

/// This node follows the session before its run starts. Never held past a
/// fraction of the retention: a ring that outlives the log's events would
/// serve a late client what the log no longer has.
pub async fn warm(state: &AppState, new: &SessionState) {
    let hold = WARM_HOLD.min(state.config.cluster.retention / 4);
    state.hub.warm(&new.id, WARM_WAIT, hold).await;
}

/// Ends a session of this creation that could not be started (the client
/// gets 503) but whose request may be queued: its `end` (`failed`) goes to
/// the log behind the empty log's fence, where a producer that takes the
/// request finds it and stops — or, when a producer already published,
/// the run is cancelled — and the state, where there is one, says failed.
async fn abandon(state: &AppState, new: &SessionState) {
    let end = Event::end(1, EndReason::Failed, None).to_raw();
    let last_seq = match state
        .bus
        .log
        .append(&new.id, &[end], weir_bus::Fence(0))
        .await
    {
        Ok(_) => 1,
        Err(weir_bus::BusError::Fenced) => {
            if let Err(e) = state
                .bus
                .control
                .send(&new.id, weir_protocol::ControlOp::Cancel)
                .await
            {
                tracing::debug!(session = %new.id, error = %e, "started unlaunched run not cancelled");
            }
            0
        }
        Err(e) => {
            tracing::debug!(session = %new.id, error = %e, "unlaunched session's end not logged");
            0
        }
    };
    let failed = Update::ended(EndReason::Failed, last_seq);
    if let Err(e) = state.store.update(&new.id, failed).await {
        tracing::debug!(session = %new.id, error = %e, "unlaunched session not marked failed");
    }
}

#[cfg(test)]
mod tests;
