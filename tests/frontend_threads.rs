//! The front ends' thread endpoints refuse bad requests (protocol.md §9):
//! `POST /v1/chat`, `GET /v1/chat/{t}/stream` and `POST /v1/threads/{t}/ag-ui`
//! on the embedded edge (memory bus and store, the binary's `run` on a free
//! port, no producer: a started run stays active). Every refusal is the
//! API's JSON error before any event; malformed messages name the field.

mod common;

use common::Embedded;
use reqwest::StatusCode;
use serde_json::{json, Value};
use weir_edge::EdgeConfig;

const SECRET: &str = "frontend-threads-test-secret-32-bytes";
const API_KEY: &str = "frontend-threads-test-api-key";

/// The edge alone, with the API key: no producer, so a started run stays
/// active until the test ends it.
async fn edge() -> Embedded {
    let mut config = EdgeConfig::local(SECRET);
    config.api_key = Some(API_KEY.into());
    Embedded::edge_only(config).await
}

/// A request with `Authorization: Bearer <token>` (none when empty).
async fn send(method: &str, url: String, token: &str, body: Option<Value>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// The request's status and its JSON error's code and message.
async fn refused(
    method: &str,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, String, String) {
    let r = send(method, url, token, body).await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.expect("an error body is JSON");
    let field = |f: &str| v["error"][f].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

/// A thread of the mock agent: its id and token.
async fn thread(edge: &Embedded) -> (String, String) {
    let url = format!("{}/v1/threads", edge.base);
    let r = send("POST", url, API_KEY, Some(json!({"agent": "mock"}))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_str().unwrap().into(),
        v["token"].as_str().unwrap().into(),
    )
}

/// useChat's body sending `text` to thread `t`.
fn chat_body(t: &str, text: &str) -> Value {
    json!({"id": t, "trigger": "submit-message",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}]})
}

fn run_input(t: &str, run: &str) -> Value {
    json!({"threadId": t, "runId": run, "messages": [{"id": "u1", "role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_send_without_a_token_or_with_another_threads_token_is_401() {
    let e = edge().await;
    let (t, _) = thread(&e).await;
    let (_, other) = thread(&e).await;
    let url = format!("{}/v1/chat", e.base);
    let (status, code, _) = refused("POST", url.clone(), "", Some(chat_body(&t, "x"))).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, code, _) = refused("POST", url, &other, Some(chat_body(&t, "x"))).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_opens_none_of_its_threads_front_end_endpoints() {
    let e = edge().await;
    let (t, token) = thread(&e).await;
    let url = format!("{}/v1/threads/{t}/runs", e.base);
    let r = send(
        "POST",
        url,
        &token,
        Some(json!({"messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let session_token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let chat = format!("{}/v1/chat", e.base);
    assert_eq!(
        refused("POST", chat, &session_token, Some(chat_body(&t, "x")))
            .await
            .0,
        401
    );
    let resume = format!("{}/v1/chat/{t}/stream", e.base);
    assert_eq!(refused("GET", resume, &session_token, None).await.0, 401);
    let ag_ui = format!("{}/v1/threads/{t}/ag-ui", e.base);
    assert_eq!(
        refused("POST", ag_ui, &session_token, Some(run_input(&t, "r1")))
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_thread_is_404_on_every_front_end_endpoint() {
    let e = edge().await;
    let key = weir_protocol::TokenKey::new(SECRET.as_bytes()).unwrap();
    let token = key.issue_thread(&weir_protocol::ThreadId::parse("nope").unwrap(), 60);
    let chat = format!("{}/v1/chat", e.base);
    let (status, code, _) = refused("POST", chat, &token, Some(chat_body("nope", "x"))).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let resume = format!("{}/v1/chat/nope/stream", e.base);
    assert_eq!(refused("GET", resume, &token, None).await.0, 404);
    let ag_ui = format!("{}/v1/threads/nope/ag-ui", e.base);
    assert_eq!(
        refused("POST", ag_ui, &token, Some(run_input("nope", "r1")))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ui_messages_are_400_naming_the_field() {
    let e = edge().await;
    let (t, token) = thread(&e).await;
    let url = format!("{}/v1/chat", e.base);
    let mut body = chat_body(&t, "x");
    body["messages"][0]["parts"][0] = json!({"type": "text", "text": 3});
    let (status, code, message) = refused("POST", url.clone(), &token, Some(body)).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert_eq!(message, "messages[0].parts[0].text: must be a string");
    let mut body = chat_body(&t, "x");
    body["trigger"] = json!("resume-stream");
    let (status, _, message) = refused("POST", url, &token, Some(body)).await;
    assert_eq!(status, 400);
    assert!(message.starts_with("trigger:"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ag_ui_messages_are_400_naming_the_field() {
    let e = edge().await;
    let (t, token) = thread(&e).await;
    let url = format!("{}/v1/threads/{t}/ag-ui", e.base);
    let mut body = run_input(&t, "r1");
    body["messages"][0]["role"] = json!("robot");
    let (status, code, message) = refused("POST", url.clone(), &token, Some(body)).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert!(message.starts_with("messages[0].role:"), "{message}");
    let mut body = run_input(&t, "r1");
    body["threadId"] = json!("another");
    let (_, _, message) = refused("POST", url.clone(), &token, Some(body)).await;
    assert!(message.starts_with("threadId:"), "{message}");
    let mut body = run_input(&t, "r1");
    body["resume"] = json!([{"interruptId": "ask_2", "status": "resolved", "payload": "yes"}]);
    let (_, _, message) = refused("POST", url, &token, Some(body)).await;
    assert_eq!(message, "resume[0].payload: must be an object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_while_the_threads_run_is_active_is_409_run_active() {
    let e = edge().await;
    let (t, token) = thread(&e).await;
    let url = format!("{}/v1/chat", e.base);
    let first = send("POST", url.clone(), &token, Some(chat_body(&t, "one"))).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["x-vercel-ai-ui-message-stream"], "v1");
    drop(first);
    let (status, code, _) = refused("POST", url, &token, Some(chat_body(&t, "two"))).await;
    assert_eq!((status, code.as_str()), (409, "run_active"));
    let ag_ui = format!("{}/v1/threads/{t}/ag-ui", e.base);
    let (status, code, _) = refused("POST", ag_ui, &token, Some(run_input(&t, "r9"))).await;
    assert_eq!((status, code.as_str()), (409, "run_active"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_with_no_active_run_is_204_for_the_ai_sdk_and_409_for_ag_ui() {
    let e = edge().await;
    let (t, token) = thread(&e).await;
    let r = send(
        "GET",
        format!("{}/v1/chat/{t}/stream", e.base),
        &token,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.bytes().await.unwrap().is_empty());
    let mut body = run_input(&t, "r2");
    body["resume"] =
        json!([{"interruptId": "ask_2", "status": "resolved", "payload": {"text": "x"}}]);
    let url = format!("{}/v1/threads/{t}/ag-ui", e.base);
    let (status, code, _) = refused("POST", url, &token, Some(body)).await;
    assert_eq!((status, code.as_str()), (409, "conflict"));
}
