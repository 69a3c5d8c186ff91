//! Pause, resume and cancel reach the producer: pause stops generation (the
//! log stops growing), resume continues, cancel ends the session `cancelled`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

async fn post(edge: &Node, s: &Session, op: &str) -> (u16, Value) {
    let url = format!("{}/v1/sessions/{}/{op}", edge.http(), s.id);
    let r = http().post(url).bearer_auth(&s.token).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn log_len(edge: &Node, s: &Session) -> usize {
    history(edge, s).await.len()
}

/// Waits until the log's last event is the producer's `paused` notice;
/// the log's length then.
async fn wait_paused_notice(edge: &Node, s: &Session) -> usize {
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let hist = history(edge, s).await;
        let last = hist.last().unwrap();
        if last["kind"] == "status" && last["data"]["state"] == "paused" {
            return hist.len();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no paused notice in the log"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_generation_resume_continues_cancel_ends() {
    let c = Cluster::start("control", 2, 1);
    let (a, b) = (c.edge(0), c.edge(1));
    let s = create_mock(a, 100_000, 100.0, 11).await;
    let mut ws = ws_connect(a, &s.id, &s.token, 0).await;
    let mut events = read(&mut ws, Stop::After(20), MINUTE).await.events;

    // Pause over HTTP on the other edge: the producer says so in the log.
    assert_eq!(post(b, &s, "pause").await.0, 202);
    let paused_at = wait_paused_notice(a, &s).await;
    // Held for a while: a producer that kept generating would append
    // tokens after its notice.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        log_len(a, &s).await,
        paused_at,
        "the producer kept generating while paused"
    );
    let st = state(a, &s).await;
    assert_eq!(st["status"], "paused");
    assert_eq!(st["control"]["op"], "pause");

    // Resume over the WebSocket: twenty more tokens reach the client.
    send(&mut ws, json!({"type": "resume"})).await;
    let wanted = paused_at + 20 - events.len();
    events.extend(read(&mut ws, Stop::After(wanted), MINUTE).await.events);
    assert_eq!(state(a, &s).await["status"], "streaming");

    // Cancel over the WebSocket: the stream ends with `cancelled`.
    send(&mut ws, json!({"type": "cancel"})).await;
    let rest = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(rest.close, Some(1000));
    assert!(rest.errors.is_empty(), "{:?}", rest.errors);
    events.extend(rest.events);
    assert_complete(&events, "cancelled");
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "status")
        .map(|e| e["data"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["paused", "resumed"]);
    // Nothing was generated between the two notices.
    let state_at = |state: &str| {
        events
            .iter()
            .position(|e| e["kind"] == "status" && e["data"]["state"] == state)
            .unwrap()
    };
    assert_eq!(state_at("resumed"), state_at("paused") + 1);
    assert!(events.len() < 1000, "cancel did not stop the run");
    let st = state(b, &s).await;
    assert_eq!(
        (st["status"].as_str(), st["end_reason"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );

    // Control of an ended session is a conflict, not a silent no-op.
    let (code, body) = post(a, &s, "pause").await;
    assert_eq!(code, 409);
    assert_eq!(body["error"]["code"], "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_before_the_producer_starts_is_obeyed() {
    // No producer yet: the run waits in the queue.
    let mut c = Cluster::start("early-cancel", 1, 0);
    let s = create_mock(c.edge(0), 100, 10.0, 1).await;
    assert_eq!(post(c.edge(0), &s, "cancel").await.0, 202);
    let p = c.spawn_producer("late-producer", &[]);
    c.producers.push(p);
    let st = wait_ended(c.edge(0), &s, MINUTE).await;
    assert_eq!(st["end_reason"], "cancelled");
    let events = history(c.edge(0), &s).await;
    assert_complete(&events, "cancelled");
    assert_eq!(events.len(), 1, "tokens were generated after the cancel");
}
