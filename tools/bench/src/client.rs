//! One WebSocket client of a session, as a browser would be: reads frames,
//! checks every event's seq against what it holds, measures latency from
//! the event's `ts`, and on a close or error reconnects (to the next edge)
//! with `after` = its last seq, timing reconnect → first resumed event.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::api::{fold, Session, DIGEST_SEED};
use super::stats::{Live, FIRST_EVENTS};

/// What a client does besides reading.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `ws://host:port` of each edge; the client starts at `first_edge`
    /// and moves to the next one on every reconnect.
    pub edges: Arc<Vec<String>>,
    pub first_edge: usize,
    /// Recompute each mock token's text from the seed and compare.
    pub check_mock_text: bool,
    /// Give up at this instant.
    pub deadline: Instant,
    /// When a gated run released its sessions; first-event time counts from
    /// here once set, else from the session's creation.
    pub released: Arc<std::sync::OnceLock<Instant>>,
    /// Drop each connection (no close frame, as a lost network does) after
    /// this many events and resume on the next edge (the soak's churn).
    pub drop_after: Option<u64>,
    /// Wall clock (Unix ms) of the session's create request, when this
    /// client's first events should be timed against it.
    pub created_ms: Option<f64>,
}

/// How one client's run went.
#[derive(Debug, Clone, Default)]
pub struct ClientResult {
    pub events: u64,
    /// `token` events among them (the mock's n-th token has text n).
    pub tokens: u64,
    pub frames: u64,
    pub last_seq: u64,
    /// Events with a seq the client already held.
    pub duplicates: u64,
    /// Seqs skipped over (an event arrived with seq > last + 1).
    pub gaps: u64,
    pub text_mismatches: u64,
    pub reconnects: u64,
    pub ended: bool,
    /// [`fold`] of every accepted event's bytes.
    pub digest: u64,
    pub first_event: Option<Duration>,
    pub last_close: Option<u16>,
    pub error: Option<String>,
    pub heartbeats: u64,
}

#[derive(Deserialize)]
struct FrameHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    events: Vec<&'a RawValue>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    seq: u64,
    #[serde(default)]
    ts: f64,
    #[serde(borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TokenData<'a> {
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// Why a connection ended.
enum Ended {
    /// Close 1000 after `end`: the session is complete.
    Done,
    /// The client should reconnect (close, error, drain).
    Retry,
    /// A close the client cannot recover from (4001, 4004, 4010, ...).
    Fatal(String),
    /// The run is over (deadline or stop).
    Stopped,
}

pub struct Client {
    session: Arc<Session>,
    config: ClientConfig,
    live: Arc<Live>,
    shard: usize,
    /// When the session was created or released: first-event time counts from here.
    started: Instant,
    r: ClientResult,
    /// Set when a connection broke; cleared by the first event after it.
    broken_at: Option<Instant>,
    hello_seen: bool,
}

impl Client {
    pub fn new(
        session: Arc<Session>,
        config: ClientConfig,
        live: Arc<Live>,
        shard: usize,
        started: Instant,
    ) -> Client {
        Client {
            session,
            config,
            live,
            shard,
            started,
            r: ClientResult {
                digest: DIGEST_SEED,
                ..ClientResult::default()
            },
            broken_at: None,
            hello_seen: false,
        }
    }

    /// Reads the session to its end (or until `stop` / the deadline).
    /// `connected` is cancelled-on-first-hello for callers that wait for
    /// every client to be subscribed.
    pub async fn run(
        mut self,
        stop: CancellationToken,
        hello: Option<tokio::sync::mpsc::Sender<()>>,
    ) -> ClientResult {
        let mut hello = hello;
        let mut edge = self.config.first_edge;
        let mut backoff = Duration::from_millis(10);
        loop {
            let url = format!(
                "{}/v1/sessions/{}/ws?token={}&after={}",
                self.config.edges[edge % self.config.edges.len()],
                self.session.id,
                self.session.token,
                self.r.last_seq
            );
            let ended = tokio::select! {
                _ = stop.cancelled() => Ended::Stopped,
                _ = tokio::time::sleep_until(self.config.deadline.into()) => Ended::Stopped,
                e = self.connection(&url, &mut hello) => e,
            };
            match ended {
                Ended::Done => {
                    self.r.ended = true;
                    break;
                }
                Ended::Stopped => break,
                Ended::Fatal(e) => {
                    self.r.error = Some(e);
                    break;
                }
                Ended::Retry => {}
            }
            self.broken_at.get_or_insert_with(Instant::now);
            self.r.reconnects += 1;
            self.live.reconnects.fetch_add(1, Ordering::Relaxed);
            edge += 1;
            // Straight to the next edge; back off only once every edge failed.
            if (self.r.reconnects as usize).is_multiple_of(self.config.edges.len()) {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
        self.live.done.fetch_add(1, Ordering::Relaxed);
        self.r
    }

    async fn connection(
        &mut self,
        url: &str,
        hello: &mut Option<tokio::sync::mpsc::Sender<()>>,
    ) -> Ended {
        let connect = tokio::time::timeout(
            Duration::from_secs(10),
            // A browser-sized read buffer: tungstenite's default (128 KiB
            // a connection) would make the tool, not the edge, the memory
            // of a 10,000-client run.
            tokio_tungstenite::connect_async_with_config(url, Some(client_ws_config()), false),
        );
        let mut ws = match connect.await {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(_)) | Err(_) => return Ended::Retry,
        };
        self.live.connected.fetch_add(1, Ordering::Relaxed);
        let drop_at = self.config.drop_after.map(|n| self.r.events + n.max(1));
        let ended = loop {
            let msg = match ws.next().await {
                Some(Ok(m)) => m,
                Some(Err(_)) | None => break Ended::Retry,
            };
            match msg {
                Message::Text(t) => {
                    if let Some(e) = self.on_text(t.as_str(), hello) {
                        break e;
                    }
                    if drop_at.is_some_and(|at| self.r.events >= at) && !self.r.ended {
                        break Ended::Retry;
                    }
                }
                Message::Close(f) => {
                    let code = f.map(|f| u16::from(f.code));
                    self.r.last_close = code;
                    break match code {
                        Some(1000) if self.r.ended => Ended::Done,
                        Some(1000) => Ended::Fatal("closed 1000 before `end`".into()),
                        Some(c @ (4001 | 4004 | 4010 | 1008 | 1009)) => {
                            Ended::Fatal(format!("closed with {c}"))
                        }
                        _ => Ended::Retry,
                    };
                }
                _ => {}
            }
        };
        self.live.connected.fetch_sub(1, Ordering::Relaxed);
        ended
    }

    /// Handles one text frame; `Some` ends the connection.
    fn on_text(
        &mut self,
        text: &str,
        hello: &mut Option<tokio::sync::mpsc::Sender<()>>,
    ) -> Option<Ended> {
        let frame: FrameHead<'_> = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => return Some(Ended::Fatal(format!("bad frame: {e}"))),
        };
        match frame.kind {
            "events" => self.on_events(&frame.events),
            "hello" => {
                if let Some(tx) = hello.take() {
                    let _ = tx.try_send(());
                }
                if !self.hello_seen {
                    self.hello_seen = true;
                    self.live.hello.record(self.shard, self.started.elapsed());
                }
                None
            }
            "heartbeat" => {
                self.r.heartbeats += 1;
                self.live.heartbeats.fetch_add(1, Ordering::Relaxed);
                None
            }
            "error" => {
                self.r.error = frame.code;
                None
            }
            _ => None, // `reconnect`: the close follows
        }
    }

    fn on_events(&mut self, events: &[&RawValue]) -> Option<Ended> {
        let at = Instant::now();
        let now_ms = weir_protocol::now_ms();
        if self.r.first_event.is_none() && !events.is_empty() {
            let from = self.config.released.get().copied().unwrap_or(self.started);
            let d = at.saturating_duration_since(from);
            self.r.first_event = Some(d);
            self.live.first_event.record(self.shard, d);
        }
        if let Some(broken) = self.broken_at.take() {
            self.live
                .resume
                .record(self.shard, at.saturating_duration_since(broken));
        }
        let mut lat = Vec::with_capacity(events.len());
        // How many of `lat` are among the client's first events.
        let mut early = 0;
        for raw in events {
            let ev: EventHead<'_> = match serde_json::from_str(raw.get()) {
                Ok(e) => e,
                Err(e) => return Some(Ended::Fatal(format!("bad event: {e}"))),
            };
            if ev.seq <= self.r.last_seq {
                self.r.duplicates += 1;
                continue;
            }
            if let (0, Some(created)) = (self.r.events, self.config.created_ms) {
                let us = ((ev.ts - created) * 1000.0).max(0.0) as u64;
                self.live.first_ts.record_all(self.shard, [us]);
            }
            self.r.gaps += ev.seq - self.r.last_seq - 1;
            self.r.last_seq = ev.seq;
            early += usize::from(self.r.events < FIRST_EVENTS);
            self.r.events += 1;
            self.r.digest = fold(self.r.digest, raw.get().as_bytes());
            lat.push(((now_ms - ev.ts) * 1000.0).max(0.0) as u64);
            if ev.kind == "end" {
                self.r.ended = true;
            } else if ev.kind == "token" {
                self.r.tokens += 1;
            }
            if self.config.check_mock_text && ev.kind == "token" {
                let expected = weir_protocol::mock::token_text(self.session.seed, self.r.tokens);
                let ok = ev
                    .data
                    .and_then(|d| serde_json::from_str::<TokenData<'_>>(d.get()).ok())
                    .is_some_and(|d| d.text == expected);
                self.r.text_mismatches += u64::from(!ok);
            }
        }
        self.r.frames += 1;
        self.live
            .latency
            .record_all(self.shard, lat.iter().copied());
        let (first, later) = lat.split_at(early);
        if !first.is_empty() {
            let first = first.iter().copied();
            self.live.first_events.record_all(self.shard, first);
        }
        if !later.is_empty() {
            let later = later.iter().copied();
            self.live.later_events.record_all(self.shard, later);
        }
        self.live.received(at, lat.len() as u64);
        None
    }
}

/// The WebSocket settings of every bench client.
fn client_ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024)
}
