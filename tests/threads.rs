//! Threads of runs (protocol.md §9) against real NATS JetStream and Redis:
//! turns of a conversation with the mock agent, each a session that streams
//! like any other, a front-end tool's call and result, and a thread whose
//! runs alternate edges after one of them is SIGKILLed — with
//! `GET /v1/threads/{t}` checked throughout. (Errors and tokens:
//! tests/thread_access.rs, on the embedded edge.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MINUTE: Duration = Duration::from_secs(60);

struct Thread {
    id: String,
    token: String,
}

async fn create_thread(edge: &Node, input: Value) -> Thread {
    let r = http()
        .post(format!("{}/v1/threads", edge.http()))
        .json(&json!({"agent": "mock", "input": input}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    Thread {
        id: v["id"].as_str().unwrap().into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

/// Starts the thread's next run with `messages` (and `tools`) on `edge`.
async fn start(edge: &Node, t: &Thread, messages: Value, tools: Value) -> Session {
    let r = http()
        .post(format!("{}/v1/threads/{}/runs", edge.http(), t.id))
        .bearer_auth(&t.token)
        .json(&json!({"messages": messages, "tools": tools}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    assert!(v["ws_url"].as_str().unwrap().contains("/ws?token="));
    Session {
        id: v["id"].as_str().unwrap().into(),
        token: v["token"].as_str().unwrap().into(),
    }
}

async fn show(edge: &Node, t: &Thread) -> Value {
    let r = http()
        .get(format!("{}/v1/threads/{}", edge.http(), t.id))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The concatenated text of a run's `token` events, every one at most 8
/// characters.
fn text(events: &[Value]) -> String {
    let tokens: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "token")
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert!(tokens.iter().all(|t| t.chars().count() <= 8), "{tokens:?}");
    tokens.concat()
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_of_a_thread_answer_their_last_message_and_a_front_end_tool_runs_between_them() {
    let c = Cluster::start("thread-turns", 1, 1);
    let edge = c.edge(0);
    let t = create_thread(edge, json!({})).await;
    let weather = json!([{"name": "weather", "parameters": {"type": "object"}}]);

    // Turn 1: an echo, read over WebSocket with the thread's token.
    let one = start(edge, &t, json!([user("hello there")]), json!([])).await;
    let mut ws = ws_connect(edge, &one.id, &t.token, 0).await;
    let got = read(&mut ws, Stop::Close, MINUTE).await;
    assert_complete(&got.events, "completed");
    assert_eq!(text(&got.events), "echo: hello there");

    // Turn 2: the page's tool is called; the run ends for the page to run it.
    let mut messages = vec![
        user("hello there"),
        json!({"role": "assistant", "content": "echo: hello there"}),
    ];
    messages.push(user(r#"/tool weather {"city": "Oslo"}"#));
    let two = start(edge, &t, json!(messages), weather.clone()).await;
    wait_ended(edge, &two, MINUTE).await;
    let events = history(edge, &two).await;
    assert_complete(&events, "completed");
    let call = events.iter().find(|e| e["kind"] == "tool_call").unwrap();
    let seq = call["seq"].as_u64().unwrap();
    assert_eq!(
        call["data"]["content"],
        json!([{"id": format!("call_{seq}"), "name": "weather", "arguments": r#"{"city": "Oslo"}"#}])
    );
    assert_eq!(events.last().unwrap()["data"]["stop_reason"], "tool_calls");

    // Turn 3: the tool's result.
    messages.push(json!({"role": "assistant", "content": null,
        "tool_calls": [{"id": format!("call_{seq}"), "name": "weather", "arguments": "{}"}]}));
    messages
        .push(json!({"role": "tool", "content": "sunny", "tool_call_id": format!("call_{seq}")}));
    let three = start(edge, &t, json!(messages), weather).await;
    wait_ended(edge, &three, MINUTE).await;
    assert_eq!(text(&history(edge, &three).await), "tool said: sunny");

    let shown = show(edge, &t).await;
    let runs: Vec<(&str, &str)> = shown["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        runs,
        vec![
            (one.id.as_str(), "completed"),
            (two.id.as_str(), "completed"),
            (three.id.as_str(), "completed"),
        ]
    );
    assert_eq!(shown["active"], Value::Null);
    assert_eq!(state(edge, &three).await["thread"], t.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threads_runs_alternate_edges_after_one_is_sigkilled() {
    let mut c = Cluster::start("thread-edges", 2, 1);
    // Slow enough that the first run is still streaming when its edge dies.
    let t = create_thread(c.edge(0), json!({"rate": 5})).await;
    let long = "a reply long enough to outlive its edge by several tokens";
    let one = start(c.edge(0), &t, json!([user(long)]), json!([])).await;
    let mut ws = ws_connect(c.edge(0), &one.id, &t.token, 0).await;
    let before = read(&mut ws, Stop::After(2), MINUTE).await;
    assert_eq!(show(c.edge(0), &t).await["active"], one.id.as_str());
    c.edges[0].proc.kill9();

    // The other edge resumes the run from the last seq held and knows the thread.
    let bases = [c.edge(1).ws()];
    let held = before.last_seq();
    let (rest, _) = read_resuming_at(&bases, &one.id, &t.token, held, MINUTE).await;
    let mut events = before.events.clone();
    events.extend(rest);
    assert_complete(&events, "completed");
    assert_eq!(text(&events), format!("echo: {long}"));

    // The next run starts on the surviving edge, then on a new one.
    let messages = json!([user(long), {"role": "assistant", "content": format!("echo: {long}")}, user("and again")]);
    let two = start(c.edge(1), &t, messages.clone(), json!([])).await;
    wait_ended(c.edge(1), &two, MINUTE).await;
    assert_eq!(text(&history(c.edge(1), &two).await), "echo: and again");
    let restarted = c.spawn_edge("edge-0b", &[]);
    let shown = show(&restarted, &t).await;
    assert_eq!(shown["runs"].as_array().unwrap().len(), 2);
    assert_eq!(shown["active"], Value::Null);
    let three = start(&restarted, &t, json!([user("third")]), json!([])).await;
    wait_ended(&restarted, &three, MINUTE).await;
    assert_eq!(text(&history(&restarted, &three).await), "echo: third");
    assert_eq!(
        show(c.edge(1), &t).await["runs"].as_array().unwrap().len(),
        3
    );
}
