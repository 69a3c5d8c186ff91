//! The front-end protocol endpoints (protocol.md §8) on real processes: the
//! AI SDK UI message stream and AG-UI give the same bytes on every edge,
//! carry the session's text and tool calls, and refuse bad requests with the
//! API's JSON errors.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use weir_bus::nats::NatsBus;
use weir_bus::{BusConfig, EventLog, Fence};
use weir_protocol::{RawEvent, SessionId, TokenKey};

const MINUTE: Duration = Duration::from_secs(60);

/// The `data:` payloads of an SSE body.
fn payloads(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

/// `GET …/ui-stream` with the token as a bearer: status, headers, body.
async fn get_ui_stream(edge: &Node, s: &Session) -> (u16, reqwest::header::HeaderMap, String) {
    let url = format!("{}/v1/sessions/{}/ui-stream", edge.http(), s.id);
    let r = http().get(url).bearer_auth(&s.token).send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

async fn post_ag_ui(edge: &Node, id: &str, token: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/sessions/{id}/ag-ui", edge.http()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn expect_error(r: reqwest::Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status);
    let body: Value = r.json().await.expect("error bodies are JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
}

/// An outside producer's AutoGen-shaped run, appended as one batch.
async fn publish_outside(c: &Cluster, id: &str) {
    let bus = NatsBus::connect(&[c.nats.url()], "frontends-test", BusConfig::default())
        .await
        .unwrap();
    let events = [
        json!({"seq":1,"kind":"token","ts":1.0,"source":"assistant","data":{"text":"Checking. "}}),
        json!({"seq":2,"kind":"tool_call","ts":2.0,"source":"assistant","data":{"type":"ToolCallRequestEvent","content":[{"id":"call_9","name":"lookup","arguments":"{\"q\":\"x\"}"}]}}),
        json!({"seq":3,"kind":"tool_result","ts":3.0,"source":"assistant","data":{"type":"ToolCallExecutionEvent","content":[{"call_id":"call_9","name":"lookup","content":"found","is_error":false}]}}),
        json!({"seq":4,"kind":"token","ts":4.0,"source":"assistant","data":{"text":"Found it."}}),
        json!({"seq":5,"kind":"end","ts":5.0,"data":{"reason":"completed"}}),
    ];
    let raw: Vec<RawEvent> = events
        .iter()
        .map(|e| RawEvent::parse(&serde_json::to_vec(e).unwrap()).unwrap())
        .collect();
    bus.append(&SessionId::parse(id).unwrap(), &raw, Fence(0))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocols_give_the_same_bytes_on_two_edges_and_refuse_bad_requests() {
    let c = Cluster::start("frontends", 2, 1);
    let (a, b) = (c.edge(0), c.edge(1));
    let mock = create_mock(a, 80, 0.0, 5).await;
    wait_ended(a, &mock, MINUTE).await;
    let outside = create(a, json!({"agent": "external"})).await;
    publish_outside(&c, &outside.id).await;
    wait_ended(a, &outside, MINUTE).await;

    for s in [&mock, &outside] {
        // The UI message stream: identical bytes from both edges.
        let (status, headers, from_a) = get_ui_stream(a, s).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-vercel-ai-ui-message-stream"], "v1");
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let (_, _, from_b) = get_ui_stream(b, s).await;
        assert_eq!(from_a, from_b, "ui-stream differs between edges");
        let chunks = payloads(&from_a);
        assert_eq!(
            chunks.first(),
            Some(&&*format!(r#"{{"type":"start","messageId":"{}"}}"#, s.id))
        );
        assert_eq!(chunks.last(), Some(&"[DONE]"));
        assert_eq!(chunks[chunks.len() - 2], r#"{"type":"finish"}"#);
        let text: String = chunks[..chunks.len() - 1]
            .iter()
            .map(|c| serde_json::from_str::<Value>(c).unwrap())
            .filter(|c| c["type"] == "text-delta")
            .map(|c| c["delta"].as_str().unwrap().to_owned())
            .collect();
        let history = history(a, s).await;
        let tokens: String = history
            .iter()
            .filter(|e| e["kind"] == "token")
            .map(|e| e["data"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(text, tokens);

        // AG-UI: identical bytes from both edges for the same RunAgentInput.
        let input = json!({"threadId": s.id, "runId": "r1", "messages": [], "tools": [], "context": [], "state": {}, "forwardedProps": {}});
        let r = post_ag_ui(a, &s.id, &s.token, input.clone()).await;
        assert_eq!(r.status(), 200);
        let ag_a = r.text().await.unwrap();
        let ag_b = post_ag_ui(b, &s.id, &s.token, input)
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(ag_a, ag_b, "ag-ui differs between edges");
        let events: Vec<Value> = payloads(&ag_a)
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(
            events[0],
            json!({"type": "RUN_STARTED", "threadId": s.id, "runId": s.id})
        );
        assert_eq!(events.last().unwrap()["type"], "RUN_FINISHED");
        let content: String = events
            .iter()
            .filter(|e| e["type"] == "TEXT_MESSAGE_CONTENT")
            .map(|e| e["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(content, tokens);
    }

    // The outside session's tool call and result, in both encodings.
    let (_, _, ui) = get_ui_stream(a, &outside).await;
    assert!(ui.contains(r#"{"type":"tool-input-available","toolCallId":"call_9","toolName":"lookup","input":{"q":"x"},"dynamic":true}"#), "{ui}");
    assert!(ui.contains(r#"{"type":"tool-output-available","toolCallId":"call_9","output":"found","dynamic":true}"#), "{ui}");
    let ag = post_ag_ui(a, &outside.id, &outside.token, json!({}))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        ag.contains(r#"{"type":"TOOL_CALL_ARGS","toolCallId":"call_9","delta":"{\"q\":\"x\"}"}"#),
        "{ag}"
    );
    assert!(
        ag.contains(r#"{"type":"TOOL_CALL_RESULT","messageId":""#),
        "{ag}"
    );

    // Bad requests: the API's errors, as JSON, before any event.
    let key = TokenKey::new(SECRET.as_bytes()).unwrap();
    let nx = SessionId::parse("no-such-session").unwrap();
    let nx_token = key.issue(&nx, 60);
    for path in ["ui-stream", "ag-ui"] {
        let url = |id: &str| format!("{}/v1/sessions/{id}/{path}", a.http());
        let post = |id: &str, token: &str| {
            http()
                .post(url(id))
                .bearer_auth(token)
                .json(&json!({}))
                .send()
        };
        expect_error(
            post(&mock.id, &outside.token).await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
        expect_error(
            post(&mock.id, "not-a-jwt").await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
        let missing = http()
            .post(url(&mock.id))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        expect_error(missing, 401, "unauthorized").await;
        expect_error(
            post(nx.as_str(), &nx_token).await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    let r = http()
        .post(format!("{}/v1/sessions/{}/ag-ui", a.http(), mock.id))
        .bearer_auth(&mock.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request").await;
    let r = post_ag_ui(a, &mock.id, &mock.token, json!({"threadId": "other"})).await;
    expect_error(r, 400, "bad_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_session_aborts_and_finishes_cancelled_and_a_reconnect_may_send_back_a_long_session(
) {
    let c = Cluster::start("frontends-cancel", 1, 1);
    let a = c.edge(0);
    let s = create_mock(a, 100_000, 200.0, 1).await;
    // Cancelled once it has started.
    let deadline = std::time::Instant::now() + MINUTE;
    while history(a, &s).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = http()
        .post(format!("{}/v1/sessions/{}/cancel", a.http(), s.id))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_ended(a, &s, MINUTE).await;
    let (_, _, ui) = get_ui_stream(a, &s).await;
    let chunks = payloads(&ui);
    assert_eq!(
        chunks[chunks.len() - 3..],
        [r#"{"type":"finish-step"}"#, r#"{"type":"abort"}"#, "[DONE]"]
    );
    let ag = post_ag_ui(a, &s.id, &s.token, json!({}))
        .await
        .text()
        .await
        .unwrap();
    let last = payloads(&ag).pop().unwrap().to_owned();
    let finished = format!(
        r#"{{"type":"RUN_FINISHED","threadId":"{0}","runId":"{0}","outcome":{{"type":"cancelled"}}}}"#,
        s.id
    );
    assert_eq!(last, finished);

    // A reconnecting client sends back all it holds, far more than the API's
    // 64 KiB body limit: accepted, answered with a snapshot.
    let held =
        json!({"id": format!("{}-m1", s.id), "role": "assistant", "content": "x".repeat(200_000)});
    let r = post_ag_ui(a, &s.id, &s.token, json!({"messages": [held]})).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let types: Vec<String> = payloads(&body)
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]);
}
