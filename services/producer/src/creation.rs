//! Run requests and the creation they belong to: edges queue a session's
//! request while they write its state, so a producer may take it first
//! ([`crate::record::recreate`]), and a request may belong to a creation
//! that was refused because its id was taken ([`crate::run`]'s admission).
//! Over the in-memory bus and store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weir_protocol::{creation_nonce, SessionId, ThreadId};
use weir_store::{SessionState, SessionStore};

use crate::testing::{ctx, memory_bus, sid, Flaky};
use crate::{run, Ctx};

const WITHIN: Duration = Duration::from_secs(10);

/// A new paced run of a thread, as an edge writes it.
fn as_an_edge_writes(id: &SessionId) -> SessionState {
    let mut new = SessionState::new(id.clone(), "mock");
    new.pace = Some(9);
    new.thread = Some(ThreadId::parse("t1").unwrap());
    new.nonce = Some(creation_nonce());
    new
}

/// Takes the one queued mock run and executes it to its end.
async fn take_and_run(ctx: &Arc<Ctx>) {
    let mut tickets = ctx.bus.runs.take("mock", 1, WITHIN).await.unwrap();
    let ticket = tickets.pop().expect("a queued run");
    let run = run::execute(ctx.clone(), ticket, CancellationToken::new());
    tokio::time::timeout(WITHIN, run)
        .await
        .expect("the run is over");
}

#[tokio::test]
async fn a_request_taken_before_its_state_is_written_writes_what_its_edge_would() {
    let store = Flaky::new();
    let ctx = ctx("p1", &memory_bus(), store.clone(), Duration::from_secs(5));
    let new = as_an_edge_writes(&sid("early"));
    let req = new.run_request(json!({"tokens": 2, "rate": 0}));
    let written = crate::record::recreate(&ctx, &req).await.unwrap();
    assert_eq!(written, new);
    assert_eq!(store.get(&new.id).await.unwrap(), Some(new.clone()));
    assert!(
        !store.create(&new).await.unwrap(),
        "the edge finds it taken"
    );
}

#[tokio::test]
async fn a_request_taken_first_runs_to_its_end_under_its_edges_state() {
    let store = Flaky::new();
    let ctx = ctx("p1", &memory_bus(), store.clone(), Duration::from_secs(5));
    let new = as_an_edge_writes(&sid("early-run"));
    let req = new.run_request(json!({"tokens": 2, "rate": 0}));
    ctx.bus.runs.enqueue(&req).await.unwrap();
    take_and_run(&ctx).await;
    let last = ctx
        .bus
        .log
        .last(&new.id)
        .await
        .unwrap()
        .expect("its events");
    assert!(last.event.end);
    let stored = store.get(&new.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.created, stored.pace, &stored.thread, &stored.nonce),
        (new.created, new.pace, &new.thread, &new.nonce)
    );
    assert!(stored.unknown.is_empty(), "{:?}", stored.unknown);
}

#[tokio::test]
async fn a_request_of_another_creation_of_its_id_is_dropped_unrun() {
    let store = Flaky::new();
    let ctx = ctx("p1", &memory_bus(), store.clone(), Duration::from_secs(5));
    let id = sid("collided");
    let other = as_an_edge_writes(&id);
    assert!(store.create(&other).await.unwrap());
    let refused = as_an_edge_writes(&id);
    ctx.bus
        .runs
        .enqueue(&refused.run_request(json!({})))
        .await
        .unwrap();
    take_and_run(&ctx).await;
    assert!(ctx.bus.log.last(&id).await.unwrap().is_none(), "it ran");
    assert!(ctx.bus.leases.get(&id).await.unwrap().is_none());
    assert_eq!(store.get(&id).await.unwrap(), Some(other));
    let wait = Duration::from_millis(200);
    let again = ctx.bus.runs.take("mock", 1, wait).await.unwrap();
    assert!(again.is_empty(), "the request was not acknowledged");
}

#[tokio::test]
async fn an_older_edges_request_runs_whatever_creation_wrote_the_state() {
    let store = Flaky::new();
    let ctx = ctx("p1", &memory_bus(), store.clone(), Duration::from_secs(5));
    let id = sid("older");
    assert!(store.create(&as_an_edge_writes(&id)).await.unwrap());
    let older = weir_protocol::RunRequest::new(id.clone(), "mock", json!({"tokens": 1}));
    ctx.bus.runs.enqueue(&older).await.unwrap();
    take_and_run(&ctx).await;
    let last = ctx.bus.log.last(&id).await.unwrap().expect("its events");
    assert!(last.event.end);
}
