//! `history_expired` (WebSocket 4010, HTTP 410) only when the log says the
//! events are gone, never because the session's state is ahead of a read of
//! the log (issue 28: a brand-new session refused with 4010).
//!
//! Reproduced deterministically on the embedded edge (memory bus and store,
//! the binary's `run` on a free port): the store records a producer's
//! progress (`last_seq` 3) while the log does not hold the events yet —
//! the order in which a producer's recorded progress is seen before its
//! publish by a log read issued at the same moment, or by a replica a
//! moment behind. Each client must be streamed from `after` and get the
//! events once they reach the log.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use weir_bus::{Bus, BusConfig, EventLog, Fence};
use weir_edge::EdgeConfig;
use weir_protocol::{EndReason, Event, SessionId, TokenKey};
use weir_store::{MemoryStore, SessionState, SessionStore};

const SECRET: &str = "expiry-test-secret-of-at-least-32-bytes";
const WITHIN: Duration = Duration::from_secs(20);

/// An embedded edge whose log and store the test writes itself.
struct Edge {
    base: String,
    log: Arc<dyn EventLog>,
    store: Arc<dyn SessionStore>,
    stop: CancellationToken,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn edge() -> Edge {
    let config = EdgeConfig::local(SECRET);
    let retention = config.cluster.retention;
    let bus = Bus::memory(BusConfig::default());
    let log = bus.log.clone();
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(retention));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let (s, shutdown) = (store.clone(), stop.clone());
    tokio::spawn(async move { weir_edge::run(config, bus, s, listener, shutdown).await });
    Edge {
        base,
        log,
        store,
        stop,
    }
}

/// A session whose state says `last_seq` (created `age` ago), while its log
/// holds nothing yet. Returns its id and token.
async fn ahead_of_the_log(
    edge: &Edge,
    name: &str,
    last_seq: u64,
    age: Duration,
) -> (String, String) {
    let id = SessionId::parse(name).unwrap();
    let mut state = SessionState::new(id.clone(), "mock");
    state.status = weir_protocol::Status::Streaming;
    state.last_seq = last_seq;
    state.created -= age.as_millis() as u64;
    assert!(edge.store.create(&state).await.unwrap());
    let token = TokenKey::new(SECRET.as_bytes()).unwrap().issue(&id, 3600);
    (name.to_owned(), token)
}

/// The producer's publish reaches the log: three tokens and the end.
async fn publish(edge: &Edge, id: &str) {
    let id = SessionId::parse(id).unwrap();
    let mut events: Vec<_> = (1..=3)
        .map(|seq| Event::new(seq, "token", None, json!({"text": format!("t{seq}")})).to_raw())
        .collect();
    events.push(Event::end(4, EndReason::Completed, None).to_raw());
    edge.log.append(&id, &events, Fence(0)).await.unwrap();
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// What a WebSocket client saw before the server closed.
async fn ws_read(ws: &mut weir_ws::Ws) -> (Vec<u64>, Vec<Value>, Option<u16>) {
    let (mut seqs, mut errors) = (Vec::new(), Vec::new());
    loop {
        let msg = tokio::time::timeout(WITHIN, ws.next())
            .await
            .expect("the server neither sent nor closed");
        match msg {
            None | Some(Err(_)) => return (seqs, errors, None),
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("events") => seqs.extend(
                        v["events"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|e| e["seq"].as_u64().unwrap()),
                    ),
                    Some("error") => errors.push(v),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(f))) => return (seqs, errors, f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
        }
    }
}

mod weir_ws {
    pub type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Connected once the edge has decided how to answer `after`.
    pub async fn connect(base: &str, id: &str, token: &str, after: u64) -> Ws {
        let url = format!(
            "{}/v1/sessions/{id}/ws?token={token}&after={after}",
            base.replacen("http", "ws", 1)
        );
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }
}

/// Reads an SSE or UI-stream body to its end.
async fn body_text(r: reqwest::Response) -> String {
    tokio::time::timeout(WITHIN, r.text())
        .await
        .expect("the stream did not end")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_whose_log_is_behind_the_store_is_streamed_over_websocket_not_refused() {
    let edge = edge().await;
    let (id, token) = ahead_of_the_log(&edge, "ws-behind", 3, Duration::ZERO).await;
    let mut ws = weir_ws::connect(&edge.base, &id, &token, 0).await;
    publish(&edge, &id).await;
    let (seqs, errors, close) = ws_read(&mut ws).await;
    assert_eq!(errors, Vec::<Value>::new());
    assert_eq!(close, Some(1000));
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_whose_log_is_behind_the_store_is_streamed_over_websocket_not_refused() {
    let edge = edge().await;
    let (id, token) = ahead_of_the_log(&edge, "ws-resume-behind", 3, Duration::ZERO).await;
    let mut ws = weir_ws::connect(&edge.base, &id, &token, 2).await;
    publish(&edge, &id).await;
    let (seqs, errors, close) = ws_read(&mut ws).await;
    assert_eq!(errors, Vec::<Value>::new());
    assert_eq!((seqs, close), (vec![3, 4], Some(1000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_whose_log_is_behind_the_store_is_streamed_over_sse_not_410() {
    let edge = edge().await;
    let (id, token) = ahead_of_the_log(&edge, "sse-behind", 3, Duration::ZERO).await;
    let url = format!("{}/v1/sessions/{id}/events?token={token}", edge.base);
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    publish(&edge, &id).await;
    let body = body_text(r).await;
    let ids: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_session_whose_log_is_behind_the_store_is_streamed_as_a_ui_message_stream_not_410() {
    let edge = edge().await;
    let (id, token) = ahead_of_the_log(&edge, "ui-behind", 3, Duration::ZERO).await;
    let url = format!("{}/v1/sessions/{id}/ui-stream?token={token}", edge.base);
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    publish(&edge, &id).await;
    let body = body_text(r).await;
    assert!(body.contains("t1") && body.contains("t3"), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_a_session_whose_log_is_behind_the_store_is_an_empty_page_not_410() {
    let edge = edge().await;
    let (id, token) = ahead_of_the_log(&edge, "history-behind", 3, Duration::ZERO).await;
    let url = format!(
        "{}/v1/sessions/{id}/history?after=0&token={token}",
        edge.base
    );
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let page: Value = r.json().await.unwrap();
    assert_eq!(page, json!({"events": [], "next_after": 0}));
    publish(&edge, &id).await;
    let page: Value = http().get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["next_after"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_older_than_the_retention_whose_log_is_gone_gets_4010_and_410() {
    let edge = edge().await;
    let retention = EdgeConfig::local(SECRET).cluster.retention;
    let (id, token) = ahead_of_the_log(&edge, "gone", 9, retention * 2).await;
    let mut ws = weir_ws::connect(&edge.base, &id, &token, 0).await;
    let (seqs, errors, close) = ws_read(&mut ws).await;
    assert_eq!((seqs, close), (vec![], Some(4010)));
    assert_eq!(errors[0]["code"], "history_expired");
    for path in ["history?after=0&", "events?"] {
        let url = format!("{}/v1/sessions/{id}/{path}token={token}", edge.base);
        let r = http().get(url).send().await.unwrap();
        assert_eq!(r.status(), 410, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "history_expired", "{path}");
    }
}
