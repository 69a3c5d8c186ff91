//! The run queue's checks: one queue per agent, each request taken once and
//! offered again until acknowledged, or sooner when offered back.

use std::time::Duration;

use weir_protocol::RunRequest;

use super::session;
use crate::{Bus, RunTicket};

/// Needs a bus whose run ack wait is at most 2 s.
pub async fn runs_are_taken_once_and_redelivered_until_acked(bus: &Bus, prefix: &str) {
    let wait = Duration::from_millis(200);
    while !bus.runs.take("mock", 16, wait).await.unwrap().is_empty() {} // leftovers of other tests
    let run = |name: &str| RunRequest::new(session(prefix, name), "mock", serde_json::json!({}));
    let requests = |tickets: &[RunTicket]| -> Vec<RunRequest> {
        tickets.iter().map(|t| t.request.clone()).collect()
    };
    bus.runs.enqueue(&run("run1")).await.unwrap();
    bus.runs.enqueue(&run("run1")).await.unwrap(); // stored once
    bus.runs.enqueue(&run("run2")).await.unwrap();
    bus.runs.enqueue(&run("run3")).await.unwrap();
    let first = bus
        .runs
        .take("mock", 2, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(requests(&first), vec![run("run1"), run("run2")]);
    let rest = bus
        .runs
        .take("mock", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(requests(&rest), vec![run("run3")]);
    let mut first = first.into_iter();
    let t1 = first.next().unwrap();
    for t in first.chain(rest) {
        t.ack.ack().await.unwrap();
    }
    // run1 was not acknowledged: it comes back after the ack wait.
    let again = bus
        .runs
        .take("mock", 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(requests(&again), vec![run("run1")]);
    for t in again {
        t.ack.ack().await.unwrap();
    }
    drop(t1);
    let none = bus
        .runs
        .take("mock", 10, Duration::from_millis(2500))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// A worker that cannot start a run offers it back: it is offered again
/// after the delay it asked for, well before the ack wait (at least 1 s in
/// these tests) would have brought it back.
pub async fn a_run_offered_back_is_offered_again_before_the_ack_wait(bus: &Bus, prefix: &str) {
    while !bus
        .runs
        .take("mock", 16, Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty()
    {} // leftovers of other tests
    let run = RunRequest::new(
        session(prefix, "offered-back"),
        "mock",
        serde_json::json!({}),
    );
    bus.runs.enqueue(&run).await.unwrap();
    let mut taken = bus
        .runs
        .take("mock", 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let ticket = taken.pop().unwrap();
    ticket.ack.retry(Duration::ZERO).await.unwrap();
    let again = bus
        .runs
        .take("mock", 1, Duration::from_millis(500))
        .await
        .unwrap();
    let mut requests = Vec::new();
    for t in again {
        requests.push(t.request.clone());
        t.ack.ack().await.unwrap();
    }
    assert_eq!(requests, vec![run], "not offered again before the ack wait");
}

/// Each agent has its own queue: a worker of one never takes another's runs.
pub async fn runs_go_to_their_agents_workers_only(bus: &Bus, prefix: &str) {
    let wait = Duration::from_millis(200);
    for agent in ["conf-a", "conf-b"] {
        while !bus.runs.take(agent, 16, wait).await.unwrap().is_empty() {}
    }
    let run = |name: &str, agent: &str| {
        RunRequest::new(session(prefix, name), agent, serde_json::json!({}))
    };
    bus.runs.enqueue(&run("for-a", "conf-a")).await.unwrap();
    bus.runs.enqueue(&run("for-b", "conf-b")).await.unwrap();
    let b = bus
        .runs
        .take("conf-b", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].request, run("for-b", "conf-b"));
    let a = bus
        .runs
        .take("conf-a", 10, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].request, run("for-a", "conf-a"));
    for t in a.into_iter().chain(b) {
        t.ack.ack().await.unwrap();
    }
    assert!(bus.runs.take("conf-a", 10, wait).await.unwrap().is_empty());
    let bad = RunRequest {
        agent: "no.dots".into(),
        ..run("bad", "x")
    };
    assert!(
        bus.runs.enqueue(&bad).await.is_err(),
        "agent name not checked"
    );
}
