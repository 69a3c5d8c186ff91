//! Asking a person mid-run (protocol.md §9) on the real stack (NATS, Redis,
//! edges and producers as processes): the mock's `/ask` answered over HTTP
//! on the other edge or over the WebSocket, an answer kept while no
//! producer waits, every viewer and replay seeing the answer once, pause
//! and cancel while waiting, a wait longer than the lease time, and the
//! endpoint's refusals.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use weir_protocol::{Event, RequestId, SessionId};

const MINUTE: Duration = Duration::from_secs(60);
const LEASE: [&str; 4] = ["--lease-ttl", "2s", "--reap-interval", "250ms"];

/// A mock thread run whose last message asks `prompt`.
async fn create_ask(edge: &Node, prompt: &str) -> Session {
    let messages = json!([{"role": "user", "content": format!("/ask {prompt}")}]);
    create(
        edge,
        json!({"agent": "mock", "input": {"messages": messages}}),
    )
    .await
}

async fn post_input(edge: &Node, s: &Session, body: Value) -> (u16, Value) {
    let url = format!("{}/v1/sessions/{}/input", edge.http(), s.id);
    let r = http()
        .post(url)
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits until the session's log ends with an event of `kind` (past
/// status notices when `kind` is not `status`); that event.
async fn wait_last(edge: &Node, s: &Session, kind: &str) -> Value {
    let deadline = std::time::Instant::now() + MINUTE;
    loop {
        let events = history(edge, s).await;
        let last = events
            .iter()
            .rev()
            .find(|e| kind == "status" || e["kind"] != "status");
        if let Some(e) = last.filter(|e| e["kind"] == kind) {
            return e.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {kind} at the end of the log: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_control(edge: &Node, s: &Session, op: &str) -> u16 {
    let url = format!("{}/v1/sessions/{}/{op}", edge.http(), s.id);
    let r = http().post(url).bearer_auth(&s.token).send().await.unwrap();
    r.status().as_u16()
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["kind"] == "token")
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_answered_on_the_other_edge_finishes_the_reply() {
    let c = Cluster::start("input-ask", 2, 1);
    let (a, b) = (c.edge(0), c.edge(1));
    let s = create_ask(a, "What is your name?").await;
    let mut ws = ws_connect(a, &s.id, &s.token, 0).await;
    let request = wait_last(b, &s, "input_request").await;
    let id = request["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, format!("ask_{}", request["seq"]));
    assert_eq!(request["data"]["prompt"], "What is your name?");
    assert_eq!(request["data"]["schema"]["required"], json!(["text"]));
    assert_eq!(state(a, &s).await["status"], "input_required");

    let (code, body) = post_input(b, &s, json!({"request": id, "data": {"text": "Ada"}})).await;
    assert_eq!(code, 202, "{body}");
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_eq!(got.close, Some(1000));
    assert_complete(&got.events, "completed");
    let input = got.events.iter().find(|e| e["kind"] == "input").unwrap();
    assert_eq!(
        input["data"],
        json!({"request": id, "data": {"text": "Ada"}})
    );
    assert_eq!(text_of(&got.events), "you answered: Ada");
    assert!(got
        .events
        .iter()
        .filter(|e| e["kind"] == "token")
        .all(|e| e["data"]["text"].as_str().unwrap().chars().count() <= 8));
    assert_eq!(wait_ended(b, &s, MINUTE).await["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_viewer_and_every_replay_sees_the_answer_once() {
    let c = Cluster::start("input-viewers", 2, 1);
    let (a, b) = (c.edge(0), c.edge(1));
    let s = create_ask(a, "colour?").await;
    let live: Vec<_> = [a, b, b]
        .iter()
        .map(|edge| {
            let (base, s) = (
                vec![edge.ws()],
                Session {
                    id: s.id.clone(),
                    token: s.token.clone(),
                },
            );
            tokio::spawn(async move { read_resuming_at(&base, &s.id, &s.token, 0, MINUTE).await.0 })
        })
        .collect();
    let request = wait_last(a, &s, "input_request").await;
    let id = request["data"]["id"].as_str().unwrap().to_owned();
    let answer = json!({"request": id, "data": {"text": "blue"}});
    assert_eq!(post_input(a, &s, answer).await.0, 202);
    let mut seen = Vec::new();
    for viewer in live {
        seen.push(viewer.await.unwrap());
    }
    // Replays after the end: WebSocket from each edge, and history.
    seen.push(read_all_resuming(&[a], &s, MINUTE).await.0);
    seen.push(read_all_resuming(&[b], &s, MINUTE).await.0);
    seen.push(history(b, &s).await);
    for events in &seen {
        assert_complete(events, "completed");
        assert_eq!(count(events, "input"), 1, "{events:?}");
        assert_eq!(count(events, "input_request"), 1, "{events:?}");
        assert_eq!(text_of(events), "you answered: blue");
        assert_eq!(events, &seen[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_input_frame_answers_and_its_refusals_are_error_frames() {
    let c = Cluster::start("input-ws", 1, 1);
    let a = c.edge(0);
    let s = create_ask(a, "city?").await;
    let mut ws = ws_connect(a, &s.id, &s.token, 0).await;
    let request = wait_last(a, &s, "input_request").await;
    let id = request["data"]["id"].as_str().unwrap().to_owned();
    let refusals = [
        (
            json!({"type": "input", "request": "ask_999", "data": {"text": "x"}}),
            "not_found",
        ),
        (
            json!({"type": "input", "request": id, "data": "Paris"}),
            "bad_request",
        ),
        (
            json!({"type": "input", "request": id, "data": {"text": 1}}),
            "bad_request",
        ),
    ];
    for (frame, _) in &refusals {
        send(&mut ws, frame.clone()).await;
    }
    send(
        &mut ws,
        json!({"type": "input", "request": id, "data": {"text": "Paris"}}),
    )
    .await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    let codes: Vec<&str> = got
        .errors
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    let wanted: Vec<&str> = refusals.iter().map(|(_, code)| *code).collect();
    assert_eq!(codes, wanted, "{:?}", got.errors);
    // The stream went on after each refusal, to the end.
    assert_eq!(got.close, Some(1000));
    assert_complete(&got.events, "completed");
    assert_eq!(text_of(&got.events), "you answered: Paris");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_endpoint_refuses_what_it_cannot_take_with_its_code() {
    let c = Cluster::start("input-errors", 1, 1);
    let a = c.edge(0);
    let s = create_ask(a, "age?").await;
    let request = wait_last(a, &s, "input_request").await;
    let id = request["data"]["id"].as_str().unwrap().to_owned();
    let rows = [
        (
            "data not an object",
            json!({"request": id, "data": [42]}),
            400,
            "bad_request",
        ),
        (
            "data not matching the schema",
            json!({"request": id, "data": {"age": 42}}),
            400,
            "bad_request",
        ),
        (
            "a request id that cannot exist",
            json!({"request": "a.b", "data": {}}),
            400,
            "bad_request",
        ),
        (
            "no request",
            json!({"data": {"text": "42"}}),
            400,
            "bad_request",
        ),
        (
            "an unknown request",
            json!({"request": "ask_77", "data": {"text": "42"}}),
            404,
            "not_found",
        ),
        (
            "the answer",
            json!({"request": id, "data": {"text": "42"}}),
            202,
            "",
        ),
        (
            "a second answer",
            json!({"request": id, "data": {"text": "43"}}),
            409,
            "conflict",
        ),
    ];
    for (case, body, status, code) in rows {
        let (got, answer) = post_input(a, &s, body).await;
        assert_eq!(got, status, "{case}: {answer}");
        if !code.is_empty() {
            assert_eq!(answer["error"]["code"], code, "{case}: {answer}");
        }
    }
    let url = format!("{}/v1/sessions/{}/input", a.http(), s.id);
    let anonymous = http()
        .post(url)
        .json(&json!({"request": id, "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "an answer without the session's token"
    );
    wait_ended(a, &s, MINUTE).await;
    let (got, answer) = post_input(a, &s, json!({"request": id, "data": {"text": "44"}})).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_answer_back_until_resume_and_cancel_ends_the_wait() {
    let c = Cluster::start("input-control", 1, 1);
    let a = c.edge(0);
    let s = create_ask(a, "ready?").await;
    let request = wait_last(a, &s, "input_request").await;
    let id = request["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(post_control(a, &s, "pause").await, 202);
    wait_last(a, &s, "status").await;
    assert_eq!(state(a, &s).await["status"], "paused");
    // Answered while paused: accepted (the request is still open) and kept.
    let answer = json!({"request": id, "data": {"text": "yes"}});
    assert_eq!(post_input(a, &s, answer).await.0, 202);
    assert_eq!(post_control(a, &s, "resume").await, 202);
    wait_ended(a, &s, MINUTE).await;
    let events = history(a, &s).await;
    assert_complete(&events, "completed");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).unwrap();
    // The answer went out after the run resumed, never while paused.
    let resumed = events
        .iter()
        .position(|e| e["data"]["state"] == "resumed")
        .unwrap();
    assert!(
        at("input_request") < resumed && resumed < at("input"),
        "{kinds:?}"
    );
    assert_eq!(text_of(&events), "you answered: yes");

    let s = create_ask(a, "still there?").await;
    wait_last(a, &s, "input_request").await;
    assert_eq!(post_control(a, &s, "cancel").await, 202);
    let st = wait_ended(a, &s, MINUTE).await;
    assert_eq!(st["end_reason"], "cancelled");
    assert_complete(&history(a, &s).await, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_an_answer_outlives_its_lease_time() {
    let c = Cluster::start_with("input-lease", 1, 1, &LEASE, &LEASE);
    let a = c.edge(0);
    let s = create_ask(a, "take your time").await;
    let request = wait_last(a, &s, "input_request").await;
    let id = request["data"]["id"].as_str().unwrap().to_owned();
    // The producer renews the lease while it waits: watch it be renewed for
    // more than two lease times (2 s each; renewals every third of it).
    let bus = weir_bus::Bus::nats(&[c.nats.url()], "input-test", Default::default())
        .await
        .unwrap();
    let session = SessionId::parse(&s.id).unwrap();
    let mut revisions = std::collections::BTreeSet::new();
    while revisions.len() < 8 {
        let lease = bus
            .leases
            .get(&session)
            .await
            .unwrap()
            .expect("the run's lease is held");
        revisions.insert(lease.revision);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state(a, &s).await["status"], "input_required");
    let answer = json!({"request": id, "data": {"text": "done"}});
    assert_eq!(post_input(a, &s, answer).await.0, 202);
    let st = wait_ended(a, &s, MINUTE).await;
    assert_eq!(st["end_reason"], "completed", "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_while_no_producer_waits_is_kept_and_delivered_once() {
    // An outside producer (as the Python package is) publishes the request
    // and goes away; the answer comes; another connection takes it over.
    let c = Cluster::start("input-kept", 1, 0);
    let a = c.edge(0);
    let s = create(a, json!({"agent": "external"})).await;
    let session = SessionId::parse(&s.id).unwrap();
    let request = RequestId::parse("approve_1").unwrap();
    let asker = weir_bus::Bus::nats(&[c.nats.url()], "asker", Default::default())
        .await
        .unwrap();
    let ask = Event::new(
        1,
        "input_request",
        None,
        json!({"id": "approve_1", "prompt": "ok?"}),
    );
    asker
        .log
        .append(&session, &[ask.to_raw()], weir_bus::Fence(0))
        .await
        .unwrap();
    drop(asker);
    assert_eq!(state(a, &s).await["status"], "input_required");
    let answer = json!({"request": "approve_1", "data": {"approved": true}});
    assert_eq!(post_input(a, &s, answer).await.0, 202);
    let taker = weir_bus::Bus::nats(&[c.nats.url()], "taker", Default::default())
        .await
        .unwrap();
    let got = tokio::time::timeout(MINUTE, taker.inputs.wait(&session, &request))
        .await
        .expect("the kept answer is delivered")
        .unwrap();
    assert_eq!(Value::Object(got), json!({"approved": true}));
    // Kept once: a second answer does not replace it.
    let again = json!({"request": "approve_1", "data": {"approved": false}});
    assert_eq!(post_input(a, &s, again).await.0, 409);
    let kept = taker.inputs.get(&session, &request).await.unwrap().unwrap();
    assert_eq!(kept["approved"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threads_token_answers_its_runs_request_and_no_run_starts_while_it_waits() {
    let c = Cluster::start("input-thread", 1, 1);
    let a = c.edge(0);
    let r = http()
        .post(format!("{}/v1/threads", a.http()))
        .json(&json!({"agent": "mock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let thread: Value = r.json().await.unwrap();
    let (t, token) = (
        thread["id"].as_str().unwrap(),
        thread["token"].as_str().unwrap(),
    );
    let run = |content: &str| {
        let url = format!("{}/v1/threads/{t}/runs", a.http());
        let body = json!({"messages": [{"role": "user", "content": content}]});
        http().post(url).bearer_auth(token).json(&body).send()
    };
    let started: Value = run("/ask Which plan?").await.unwrap().json().await.unwrap();
    let s = Session {
        id: started["id"].as_str().unwrap().into(),
        token: started["token"].as_str().unwrap().into(),
    };
    let request = wait_last(a, &s, "input_request").await;
    // A run waiting for its answer has not ended: the thread takes no other run.
    let busy = run("hello").await.unwrap();
    assert_eq!(busy.status(), 409);
    // The thread's token answers, as the session's would.
    let id = request["data"]["id"].as_str().unwrap();
    let url = format!("{}/v1/sessions/{}/input", a.http(), s.id);
    let body = json!({"request": id, "data": {"text": "pro"}});
    let answered = http()
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 202);
    wait_ended(a, &s, MINUTE).await;
    assert_eq!(text_of(&history(a, &s).await), "you answered: pro");
    assert_eq!(run("hello").await.unwrap().status(), 201);
}
