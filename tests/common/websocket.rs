//! WebSocket clients of a session: connect, read frames until a stop
//! condition, resume after a seq, send client frames, and the check that a
//! client holds a whole session.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::cluster::Endpoint;
use super::http_api::Session;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(edge: &impl Endpoint, id: &str, token: &str, after: u64) -> Ws {
    let url = format!(
        "{}/v1/sessions/{id}/ws?token={token}&after={after}",
        edge.ws()
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    ws
}

/// What a WebSocket client saw.
#[derive(Debug, Default)]
pub struct Received {
    pub hello: Option<Value>,
    pub events: Vec<Value>,
    pub frames: usize,
    pub errors: Vec<Value>,
    pub other: Vec<Value>,
    /// `None`: the connection dropped without a close frame.
    pub close: Option<u16>,
}

impl Received {
    pub fn seqs(&self) -> Vec<u64> {
        self.events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.seqs().last().copied().unwrap_or(0)
    }
}

pub enum Stop {
    /// Read until the server closes.
    Close,
    /// Stop after this many events (leave the socket open).
    After(usize),
}

/// Reads frames until the server closes (or `stop`), within `within`.
pub async fn read(ws: &mut Ws, stop: Stop, within: Duration) -> Received {
    let mut got = Received::default();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Stop::After(n) = stop {
            if got.events.len() >= n {
                return got;
            }
        }
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!(
                "no close within {within:?}; got {} events",
                got.events.len()
            ),
            Ok(None) | Ok(Some(Err(_))) => return got,
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("server frames are JSON");
                match v["type"].as_str() {
                    Some("hello") => got.hello = Some(v),
                    Some("events") => {
                        got.frames += 1;
                        got.events
                            .extend(v["events"].as_array().unwrap().iter().cloned());
                    }
                    Some("error") => got.errors.push(v),
                    _ => got.other.push(v),
                }
            }
            Message::Close(f) => {
                got.close = f
                    .map(|f| u16::from(f.code))
                    .or(Some(u16::from(CloseCode::Status)));
                return got;
            }
            _ => {}
        }
    }
}

/// Reads a whole session over WebSocket, reconnecting (to `edges` in turn)
/// with the last seq held whenever the connection drops before `end`.
pub async fn read_all_resuming<E: Endpoint>(
    edges: &[&E],
    s: &Session,
    within: Duration,
) -> (Vec<Value>, usize) {
    read_resuming_from(edges, s, 0, within).await
}

/// [`read_all_resuming`] for a client that already holds seqs up to `start`.
pub async fn read_resuming_from<E: Endpoint>(
    edges: &[&E],
    s: &Session,
    start: u64,
    within: Duration,
) -> (Vec<Value>, usize) {
    let bases: Vec<String> = edges.iter().map(|e| e.ws()).collect();
    read_resuming_at(&bases, &s.id, &s.token, start, within).await
}

/// [`read_resuming_from`] over edges given by their `ws://host:port` bases
/// (owned, so that clients can run in tasks of their own).
pub async fn read_resuming_at(
    bases: &[String],
    id: &str,
    token: &str,
    start: u64,
    within: Duration,
) -> (Vec<Value>, usize) {
    let deadline = Instant::now() + within;
    let mut events: Vec<Value> = Vec::new();
    let mut reconnects = 0;
    let mut i = 0;
    loop {
        let after = events.last().map_or(start, |e| e["seq"].as_u64().unwrap());
        let url = format!(
            "{}/v1/sessions/{id}/ws?token={token}&after={after}",
            bases[i % bases.len()],
        );
        if let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(url),
        )
        .await
        {
            let got = read(
                &mut ws,
                Stop::Close,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await;
            events.extend(got.events);
            if got.close == Some(1000) {
                return (events, reconnects);
            }
        }
        assert!(
            Instant::now() < deadline,
            "session {id} not finished in time (holding {} events)",
            events.len()
        );
        reconnects += 1;
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Checks seqs are exactly 1..=n, in order, ending with `end`.
pub fn assert_complete(events: &[Value], reason: &str) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(i as u64 + 1),
            "gap, repeat or disorder at index {i}"
        );
    }
    let last = events.last().expect("no events");
    assert_eq!(last["kind"], "end");
    assert_eq!(last["data"]["reason"], reason);
    assert_eq!(events.iter().filter(|e| e["kind"] == "end").count(), 1);
}
