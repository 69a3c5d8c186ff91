//! Threads' errors and tokens (protocol.md §9) on the embedded edge (memory
//! bus and store, the binary's `run` on a free port, no producer): the test
//! ends runs itself by appending their `end` to the log, as a producer
//! would, without telling the store — the log is the truth.

mod common;

use common::Embedded;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use weir_bus::Fence;
use weir_edge::EdgeConfig;
use weir_protocol::{EndReason, Event, SessionId};

const SECRET: &str = "thread-access-test-secret-of-32-bytes";
const API_KEY: &str = "thread-test-api-key";

/// The edge alone, with the API key: no producer, so a started run stays
/// active until the test ends it.
async fn edge() -> Embedded {
    let mut config = EdgeConfig::local(SECRET);
    config.api_key = Some(API_KEY.into());
    Embedded::edge_only(config).await
}

/// A request with `Authorization: Bearer <token>`; its status and JSON body.
async fn call(method: &str, url: String, token: &str, body: Option<Value>) -> (StatusCode, Value) {
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    }
    .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A thread of the mock agent: its id and token.
async fn thread(edge: &Embedded) -> (String, String) {
    let url = format!("{}/v1/threads", edge.base);
    let (status, v) = call("POST", url, API_KEY, Some(json!({"agent": "mock"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    (
        v["id"].as_str().unwrap().into(),
        v["token"].as_str().unwrap().into(),
    )
}

fn say(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// Starts a run; its status and body.
async fn run(edge: &Embedded, t: &str, token: &str, body: Value) -> (StatusCode, Value) {
    call(
        "POST",
        format!("{}/v1/threads/{t}/runs", edge.base),
        token,
        Some(body),
    )
    .await
}

/// Ends a run in its log, as its producer would; the store is not told.
async fn end_in_log(edge: &Embedded, session: &str) {
    let id = SessionId::parse(session).unwrap();
    let end = Event::end(1, EndReason::Completed, None).to_raw();
    edge.bus.log.append(&id, &[end], Fence(0)).await.unwrap();
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_thread_is_shown_to_its_token_and_to_the_api_key() {
    let edge = edge().await;
    let (t, token) = thread(&edge).await;
    for who in [token.as_str(), API_KEY] {
        let (status, v) = call("GET", format!("{}/v1/threads/{t}", edge.base), who, None).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["id"], t.as_str());
        assert_eq!(v["agent"], "mock");
        assert_eq!(v["runs"], json!([]));
        assert_eq!(v["active"], Value::Null);
    }
}

#[tokio::test]
async fn an_unknown_thread_is_404() {
    let edge = edge().await;
    let (status, v) = call(
        "GET",
        format!("{}/v1/threads/nope", edge.base),
        API_KEY,
        None,
    )
    .await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, v) = run(&edge, "nope", API_KEY, say("hi")).await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn a_session_token_on_a_thread_endpoint_is_401() {
    let edge = edge().await;
    let (t, token) = thread(&edge).await;
    let (_, started) = run(&edge, &t, &token, say("hi")).await;
    let session_token = started["token"].as_str().unwrap();
    let (status, _) = call(
        "GET",
        format!("{}/v1/threads/{t}", edge.base),
        session_token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = run(&edge, &t, session_token, say("again")).await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
}

#[tokio::test]
async fn another_threads_token_is_401() {
    let edge = edge().await;
    let (t, _) = thread(&edge).await;
    let (_, other) = thread(&edge).await;
    let (status, _) = call("GET", format!("{}/v1/threads/{t}", edge.base), &other, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = run(&edge, &t, &other, say("hi")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_run_while_the_previous_has_not_ended_is_409_run_active_until_its_log_ends_it() {
    let edge = edge().await;
    let (t, token) = thread(&edge).await;
    let (status, first) = run(&edge, &t, &token, say("one")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = first["id"].as_str().unwrap();
    let (status, v) = run(&edge, &t, &token, say("two")).await;
    assert_eq!(
        (status, error_code(&v)),
        (StatusCode::CONFLICT, "run_active"),
        "{v}"
    );
    let url = format!("{}/v1/threads/{t}", edge.base);
    let (_, shown) = call("GET", url.clone(), &token, None).await;
    assert_eq!(shown["active"], first_id);
    assert_eq!(shown["runs"][0]["status"], "queued");
    // The log ends it; the store still says queued, and the thread is free.
    end_in_log(&edge, first_id).await;
    let (status, second) = run(&edge, &t, &token, say("two")).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let (_, shown) = call("GET", url, &token, None).await;
    let runs: Vec<&Value> = shown["runs"].as_array().unwrap().iter().collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (&runs[0]["id"], &runs[0]["status"]),
        (&first["id"], &json!("completed"))
    );
    assert_eq!(runs[1]["id"], second["id"]);
    assert_eq!(shown["active"], second["id"]);
}

#[tokio::test]
async fn malformed_messages_and_tools_are_400_naming_the_field() {
    let edge = edge().await;
    let (t, token) = thread(&edge).await;
    let user = json!({"role": "user", "content": "hi"});
    let rows = [
        (
            json!({"messages": [user, {"role": "robot", "content": "x"}]}),
            "messages[1].role",
        ),
        (
            json!({"messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (json!({"messages": "hi"}), "messages must be an array"),
        (json!({}), "messages"),
        (
            json!({"messages": [user], "tools": [{"description": "x"}]}),
            "tools[0].name",
        ),
        (
            json!({"messages": [user], "input": {"tokens": "many"}}),
            "mock input",
        ),
    ];
    for (body, field) in rows {
        let (status, v) = run(&edge, &t, &token, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{body}: {message:?} does not name {field}"
        );
    }
    // Nothing was started by a refused request.
    let (_, shown) = call("GET", format!("{}/v1/threads/{t}", edge.base), &token, None).await;
    assert_eq!(shown["runs"], json!([]));
}

#[tokio::test]
async fn a_thread_token_opens_its_runs_state_history_and_streams_but_not_another_threads() {
    let edge = edge().await;
    let (t, token) = thread(&edge).await;
    let (_, other) = thread(&edge).await;
    let (_, started) = run(&edge, &t, &token, say("hi")).await;
    let s = started["id"].as_str().unwrap();
    end_in_log(&edge, s).await;
    let base = format!("{}/v1/sessions/{s}", edge.base);
    let (status, state) = call("GET", base.clone(), &token, None).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["thread"], t.as_str());
    let (status, history) = call("GET", format!("{base}/history"), &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history["events"][0]["kind"], "end");
    let sse = reqwest::get(format!("{base}/events?token={token}"))
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    assert!(sse.text().await.unwrap().contains("event: end"));
    let ws_url = format!("{}/ws?token={token}", base.replacen("http", "ws", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let hello = match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
        m => panic!("{m:?}"),
    };
    assert_eq!(hello["type"], "hello");
    // Another thread's token opens none of it.
    for path in ["", "/history"] {
        let (status, _) = call("GET", format!("{base}{path}"), &other, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let (status, _) = call("POST", format!("{base}/cancel"), &other, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_operator_listing_names_each_runs_thread() {
    let edge = edge().await;
    let (t, token) = thread(&edge).await;
    let (_, started) = run(&edge, &t, &token, say("hi")).await;
    let url = format!("{}/v1/sessions?limit=10", edge.base);
    let (status, listed) = call("GET", url, API_KEY, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let entry = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == started["id"])
        .expect("the run is listed");
    assert_eq!(entry["thread"], t.as_str());
}
