//! A local server that speaks the OpenAI streaming wire format, for the
//! `openai` agent's tests (tests/openai.rs, tests/openai_threads.rs):
//! recorded chunk streams (`tests/fixtures/*.sse`) written a few bytes at a
//! time, error statuses with their JSON bodies, stalls and silences, and the
//! requests it was sent.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use weir_producer::agents::openai::OpenAiAgent;
use weir_producer::agents::{Agent, AgentError, Emitter, Finish, Gate};
use weir_producer::config::OpenAiConfig;

pub const KEY: &str = "sk-test-0123456789";

/// What the fake endpoint answers.
#[derive(Clone)]
pub enum Reply {
    /// A recorded stream, 7 bytes per write; then the end of the body or,
    /// with `hold`, an open and silent response.
    Sse { fixture: &'static str, hold: bool },
    /// An error status with a recorded JSON body.
    Status(u16, &'static str),
    /// No response at all.
    Silent,
    /// 16 KiB token chunks for ever, metered.
    Endless(Arc<Meter>),
}

#[derive(Default)]
pub struct Meter {
    /// Bytes the server's body stream handed to the connection.
    pub written: AtomicUsize,
    /// The body stream was dropped: the client went away.
    pub dropped: AtomicBool,
}

pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Value,
}

pub type Requests = Arc<Mutex<Vec<Recorded>>>;

pub struct Upstream {
    pub base_url: String,
    pub requests: Requests,
}

impl Upstream {
    pub async fn start(reply: Reply) -> Upstream {
        let requests = Requests::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(answer))
            .with_state((reply, requests.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream {
            base_url: format!("http://{addr}/v1"),
            requests,
        }
    }

    pub fn config(&self) -> OpenAiConfig {
        OpenAiConfig {
            base_url: self.base_url.clone(),
            api_key: Some(KEY.into()),
            first_token_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(3),
            ..OpenAiConfig::local()
        }
    }
}

pub async fn answer(
    State((reply, requests)): State<(Reply, Requests)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push(Recorded { headers, body });
    match reply {
        Reply::Sse {
            fixture: name,
            hold,
        } => event_stream(trickle(fixture(name), hold)),
        Reply::Status(code, name) => (
            StatusCode::from_u16(code).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            fixture(name),
        )
            .into_response(),
        Reply::Silent => std::future::pending().await,
        Reply::Endless(meter) => event_stream(endless(meter)),
    }
}

pub fn event_stream(body: BoxStream<'static, Result<Bytes, Infallible>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

pub fn fixture(name: &str) -> Bytes {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into()
}

/// The bytes in writes of 7 (splitting lines, CRLFs and UTF-8 sequences),
/// with a pause now and then so they reach the client in pieces.
pub fn trickle(bytes: Bytes, hold: bool) -> BoxStream<'static, Result<Bytes, Infallible>> {
    let pieces: Vec<Bytes> = (0..bytes.len())
        .step_by(7)
        .map(|i| bytes.slice(i..bytes.len().min(i + 7)))
        .collect();
    let tail = if hold {
        stream::pending().boxed()
    } else {
        stream::empty().boxed()
    };
    stream::iter(pieces.into_iter().enumerate())
        .then(|(n, piece)| async move {
            if n % 8 == 7 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
            Ok(piece)
        })
        .chain(tail)
        .boxed()
}

pub fn endless(meter: Arc<Meter>) -> BoxStream<'static, Result<Bytes, Infallible>> {
    struct OnDrop(Arc<Meter>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.dropped.store(true, Ordering::SeqCst);
        }
    }
    let chunk = json!({"choices": [{"index": 0, "delta": {"content": "x".repeat(16 << 10)}}]});
    let event = Bytes::from(format!("data: {chunk}\n\n"));
    let guard = OnDrop(meter);
    stream::repeat(event)
        .map(move |e| {
            guard.0.written.fetch_add(e.len(), Ordering::SeqCst);
            Ok(e)
        })
        .boxed()
}

/// Runs the agent with an open gate; its result and its events `(kind, data)`.
pub async fn run(
    config: OpenAiConfig,
    input: Value,
) -> (Result<Finish, AgentError>, Vec<(String, Value)>) {
    let agent = OpenAiAgent::new(config).unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let (_gate, gate_rx) = watch::channel(Gate::Open);
    let mut out = Emitter::new(tx, gate_rx);
    let result = agent.run(input, &mut out).await;
    drop(out);
    let mut events = Vec::new();
    while let Some(o) = rx.recv().await {
        assert_eq!(o.source.as_deref(), Some("assistant"));
        events.push((o.kind, o.data));
    }
    (result, events)
}

pub async fn run_fixture(
    fixture: &'static str,
) -> (Result<Finish, AgentError>, Vec<(String, Value)>) {
    let up = Upstream::start(Reply::Sse {
        fixture,
        hold: false,
    })
    .await;
    run(up.config(), json!({"prompt": "hi"})).await
}

pub fn ev(kind: &str, data: Value) -> (String, Value) {
    (kind.to_owned(), data)
}

pub fn tokens(texts: &[&str]) -> Vec<(String, Value)> {
    texts
        .iter()
        .map(|t| ev("token", json!({"text": t})))
        .collect()
}

pub fn stopped_by(reason: &str) -> Result<Finish, AgentError> {
    Ok(Finish {
        stop_reason: Some(reason.into()),
    })
}

pub fn failure(result: Result<Finish, AgentError>) -> (String, String) {
    match result {
        Err(AgentError::Failed { code, message }) => (code, message),
        other => panic!("expected a failure, got {other:?}"),
    }
}
